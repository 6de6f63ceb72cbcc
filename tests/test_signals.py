"""Stop signals: `adm sample` stopped by SIGTERM (batch schedulers, `timeout`, `docker stop`) or
Ctrl-C says truly what it kept and exits 128 + N (issue 20, item 13).

SIGTERM used to kill the process outright: exit 143, no message, and a `run.json` left in
`.parts/` with no shard; Ctrl-C before the first batch said "finished batches are kept".
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adm.core.signals import GracefulStop, Interrupted, raising

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def start(out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "adm.cli", "sample", "--preset", "digits", "--out", str(out), "-q",
                             *args], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(proc: subprocess.Popen, pattern: str, folder: Path) -> None:
    deadline = time.monotonic() + 120
    while not list(folder.glob(pattern)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.02)


def error_line(proc: subprocess.Popen) -> str:
    _, err = proc.communicate(timeout=120)
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_sigterm_says_what_was_kept(tmp_path):
    """Two runs at once (a process starts slowly): one stopped during its first batch, which leaves
    nothing, one after finishing batches, which keeps them (and no lock or temporary file)."""
    early, late = tmp_path / "early", tmp_path / "late"
    early.mkdir()
    late.mkdir()
    first = start(early / "s.npz", "-n", "64", "-b", "64", "--steps", "25")  # one long batch
    kept = start(late / "s.npz", "-n", "200", "-b", "2", "--steps", "4")
    wait_for(first, "s.npz.parts/run.json", early)
    first.send_signal(signal.SIGTERM)
    wait_for(kept, "s.npz.parts/shard-*.npz", late)
    kept.send_signal(signal.SIGTERM)

    assert error_line(first) == "error: interrupted by SIGTERM: nothing was written"
    assert first.returncode == 128 + signal.SIGTERM
    assert list(early.iterdir()) == []

    line = error_line(kept)
    assert kept.returncode == 128 + signal.SIGTERM
    parts = late / "s.npz.parts"
    shards = sorted(parts.glob("shard-*.npz"))
    assert line == (f"error: interrupted by SIGTERM: {len(shards)} finished batch{'es' if len(shards) > 1 else ''} "
                    f"({2 * len(shards)} of 200 samples) kept in {parts} (run the same command to continue)")
    assert sorted(p.name for p in late.iterdir()) == ["s.npz.parts"]


def test_raising_turns_sigterm_into_an_interruption_and_restores_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as info, raising():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler runs before this ends
    assert info.value.signum == signal.SIGTERM and info.value.exit_code == 143
    assert isinstance(info.value, KeyboardInterrupt) and not isinstance(info.value, Exception)
    assert signal.getsignal(signal.SIGTERM) is before


def test_graceful_stop_defers_the_first_signal_and_interrupts_on_the_second():
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.01)
        assert stop.requested and stop.signum == signal.SIGTERM
        with pytest.raises(Interrupted) as info:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert info.value.exit_code == 130
