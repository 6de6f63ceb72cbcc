"""Stop signals (SIGINT, SIGTERM): how every command is stopped, and what it says when it is.

Python turns Ctrl-C (SIGINT) into ``KeyboardInterrupt``, so ``finally`` blocks and clean-ups run.
SIGTERM, which batch schedulers, ``timeout``, ``docker stop`` and ``kill`` send, kills a Python
process outright by default: no clean-up runs, nothing is said, and half-made outputs stay.
Two ways to receive both signals, sharing one installer (``handling``):

* ``raising()``: SIGTERM raises ``Interrupted`` (a ``KeyboardInterrupt``) as SIGINT does, so every
  clean-up written for Ctrl-C runs for it too (the CLI wraps each command in it);
* ``GracefulStop``: the signal is noted and the work stops at its next safe point (``adm train``
  checkpoints first); a second signal interrupts at once.

A command stopped by signal N exits ``128 + N``, as a shell reports it (130 for SIGINT, 143 for
SIGTERM).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupted(KeyboardInterrupt):
    """Work stopped by a signal. ``kept`` says what of it remains, ``hint`` how to go on.

    A ``KeyboardInterrupt``, so that code catching Ctrl-C catches it, and code catching
    ``Exception`` does not swallow it.
    """

    def __init__(self, signum: int = signal.SIGINT, kept: str | None = None, hint: str | None = None):
        super().__init__(signum, kept, hint)
        self.signum = int(signum)
        self.kept = kept
        self.hint = hint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        text = "interrupted" if self.signum == signal.SIGINT else f"interrupted by {signal_name(self.signum)}"
        if self.kept:
            text += f": {self.kept}"
        return f"{text} ({self.hint})" if self.hint else text


def signal_of(err: KeyboardInterrupt) -> int:
    """The signal behind an interruption: Ctrl-C's SIGINT unless it says otherwise."""
    return getattr(err, "signum", signal.SIGINT)


@contextmanager
def handling(handler: Callable[[int, Any], None]) -> Iterator[None]:
    """``handler`` receives SIGTERM and SIGINT within the block; the previous handlers come back
    after. Signals reach only the main thread: elsewhere this does nothing."""
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _raise(signum: int, frame) -> None:
    raise Interrupted(signum)


@contextmanager
def raising() -> Iterator[None]:
    """Within the block SIGTERM, like SIGINT, raises ``Interrupted`` where the main thread is."""
    with handling(_raise):
        yield


class GracefulStop:
    """SIGTERM / SIGINT ask the work to stop at its next safe point (``requested``); a second
    signal interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._handling = handling(self._handle)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum

    def __enter__(self) -> GracefulStop:
        self._handling.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._handling.__exit__(*exc)
