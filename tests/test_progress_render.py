"""Progress bars never show an invented total or a count past the total (issue 11: `0/? bytes`
for downloads without a size, `30/20 step` for a resumed or finished training run)."""

from __future__ import annotations

import io

from rich.console import Console

from adm.cli.progress import RichProgress
from adm.core.progress import Progress


def render(progress) -> str:
    out = Console(file=io.StringIO(), width=160, color_system=None)
    out.print(progress.make_tasks_table(progress.tasks))
    return out.file.getvalue()


def quiet_console() -> Console:
    return Console(file=io.StringIO(), width=160, color_system=None)


def test_count_never_exceeds_total():
    bars = RichProgress(console=quiet_console())
    with bars:
        bars(Progress("train", 30, 20, "step"))
        text = render(bars.bars)
    assert "30/30 step" in text and "30/20" not in text


def test_unknown_total_shows_the_count_alone():
    bars = RichProgress(console=quiet_console())
    with bars:
        bars(Progress("hash", 5, None, "it"))
        text = render(bars.bars)
    assert "5 it" in text and "?" not in text


def test_bytes_without_a_size_show_bytes_not_a_fake_total():
    bars = RichProgress(console=quiet_console())
    with bars:
        bars(Progress("256-cond", 1_234_567, None, "B"))
        text = render(bars.bars)
    assert "1.2 MB" in text and "?" not in text and "/" not in text.replace("256-cond", "")


def test_bytes_with_a_size_and_a_size_that_was_wrong():
    bars = RichProgress(console=quiet_console())
    with bars:
        bars(Progress("t", 150_000, 300_000, "B"))
        assert "150.0/300.0 kB" in render(bars.bars)
        bars(Progress("t", 400_000, 300_000, "B"))  # a server that announced too little
        assert "400.0/400.0 kB" in render(bars.bars)


def test_counts_and_bytes_in_one_display():
    bars = RichProgress(console=quiet_console())
    with bars:
        bars(Progress("64-cond", 2_000_000, 4_000_000, "B"))
        bars(Progress("sampling", 3, 16, "img"))
        text = render(bars.bars)
    assert "2.0/4.0 MB" in text and "3/16 img" in text


def test_no_blank_line_when_nothing_was_reported():
    console = quiet_console()
    with RichProgress(console=console):
        pass
    assert console.file.getvalue() == ""


LONG = ("heun is a single-step high-order solver; at classifier scale 8 such solvers are known to degrade: "
        "consider --threshold 0.995 or a multistep sampler (dpm++2m, unipc) [arr_0]")


def test_a_message_is_one_line_at_80_columns():
    """Logs are read by line: a warning wrapped by rich at 80 columns was three (issue 21)."""
    console = Console(file=io.StringIO(), width=80, color_system=None)
    with RichProgress(console=console) as bars:
        bars(Progress("sampling", 0, 4, "img", message=f"warning: {LONG}"))
    assert console.file.getvalue() == f"warning: {LONG}\n"  # whole, markup-like text included


def test_a_cli_warning_is_one_line_at_80_columns(monkeypatch):
    from adm.cli import common

    console = Console(file=io.StringIO(), width=80, color_system=None)
    monkeypatch.setattr(common, "err_console", console)
    common.warn(LONG)
    assert console.file.getvalue() == f"warning: {LONG}\n"
