"""How long-running library functions report progress without printing.

A job takes ``on_progress: ProgressFn | None`` and calls it with a ``Progress`` record whenever
something worth showing happens. The CLI turns these into rich progress bars
(``adm.cli.progress.RichProgress``); tests collect them in a list; a notebook can ignore them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """``completed`` of ``total`` units of ``task`` are done; ``info`` holds extra figures (loss, ...)."""

    task: str
    completed: float
    total: float | None = None
    unit: str = "it"
    info: dict[str, Any] = field(default_factory=dict)
    message: str | None = None


ProgressFn = Callable[[Progress], None]


def report(on_progress: ProgressFn | None, *args, **kwargs) -> None:
    if on_progress is not None:
        on_progress(Progress(*args, **kwargs))
