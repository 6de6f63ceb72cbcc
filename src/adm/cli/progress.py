"""Rendering the library's ``Progress`` records as rich progress bars (one bar per task)."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from adm.cli.common import err_console
from adm.progress import Progress as Event


class RichProgress:
    """A context manager whose instance is a ``ProgressFn``."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[unit]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=err_console,
            disable=not enabled,
        )
        self._tasks: dict[str, TaskID] = {}

    def __enter__(self) -> RichProgress:
        self._bars.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._bars.__exit__(*exc)

    def __call__(self, event: Event) -> None:
        if event.message:
            self._bars.console.print(event.message, highlight=False)
        info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in event.info.items())
        if event.task not in self._tasks:
            self._tasks[event.task] = self._bars.add_task(event.task, total=event.total, unit=event.unit, info=info)
        self._bars.update(self._tasks[event.task], completed=event.completed, total=event.total, info=info)
