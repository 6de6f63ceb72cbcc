"""Progress bars never show an invented total or a count past the total (issue 11: `0/? bytes`
for downloads without a size, `30/20 step` for a resumed or finished training run)."""

from __future__ import annotations

import io

from rich.console import Console

from adm.cli.progress import RichProgress, byte_bars, update_bytes
from adm.progress import Progress


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
    bars = byte_bars(quiet_console())
    task = bars.add_task("256-cond", total=None)
    update_bytes(bars, task, 1_234_567, None)
    text = render(bars)
    assert "1.2 MB" in text and "?" not in text and "/" not in text.replace("256-cond", "")


def test_bytes_with_a_size_and_a_size_that_was_wrong():
    bars = byte_bars(quiet_console())
    task = bars.add_task("t", total=None)
    update_bytes(bars, task, 150_000, 300_000)
    assert "150.0/300.0 kB" in render(bars)
    update_bytes(bars, task, 400_000, 300_000)  # a server that announced too little
    assert "400.0/400.0 kB" in render(bars)


def test_no_blank_line_when_nothing_was_reported():
    console = quiet_console()
    with RichProgress(console=console):
        pass
    assert console.file.getvalue() == ""
