"""Rendering the library's ``Progress`` records as rich bars: counts, or bytes (unit ``"B"``).

The library reports everything through one protocol (``adm.core.progress``): images sampled, training
steps, bytes downloaded or hashed. A task whose unit is ``"B"`` is drawn as a transfer (size and
speed); any other as ``done/total unit``. Two rules every bar keeps, whatever the caller reports: a total nobody knows is not shown (a
download without a ``Content-Length`` shows the bytes so far and the speed, never ``0/?``), and
the count never exceeds the total (a resumed run past its target shows ``30/30``, not ``30/20``).
"""

from __future__ import annotations

from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from adm.cli.common import err_console
from adm.core.progress import Progress as Event

BYTES = "B"


class AmountColumn(ProgressColumn):
    """``done/total unit`` (``done unit`` while the total is unknown), or sizes for byte tasks."""

    def __init__(self):
        super().__init__()
        self._bytes = BytesColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == BYTES:
            return self._bytes.render(task)
        done = int(task.completed)
        unit = task.fields.get("unit", "")
        text = f"{done}/{int(task.total)}" if task.total is not None else f"{done}"
        return Text(f"{text} {unit}".rstrip(), style="progress.download")


class BytesColumn(DownloadColumn):
    """``1.2/3.4 MB``, or ``1.2 MB`` while the size is unknown (rich would print ``1.2/? MB``)."""

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text(decimal(int(task.completed)), style="progress.download")
        return super().render(task)


class SpeedColumn(TransferSpeedColumn):
    """Bytes per second for byte tasks, or nothing before there is a rate (rich would print ``?``)."""

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") != BYTES:
            return Text("")
        speed = task.finished_speed or task.speed
        return Text("") if speed is None else super().render(task)


class RemainingColumn(TimeRemainingColumn):
    """Time left (after ``label``), or nothing when there is no total to estimate it from.

    A task that reports its own estimate (``info["eta"]``, seconds: training, whose pace leaves
    out the time spent on sample grids and evaluations and adds the ones still to come) shows
    that; others rich's estimate from the recent updates.
    """

    def __init__(self, label: str = "", **kwargs):
        super().__init__(**kwargs)
        self.label = label

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        eta = task.fields.get("eta")
        if eta is not None and not task.finished:
            return Text(self.label + _clock(eta), style="progress.remaining")
        return Text(self.label, style="progress.remaining") + super().render(task)


def _clock(seconds: float) -> str:
    """``1:02:05`` (as rich writes times left)."""
    minutes, secs = divmod(round(max(seconds, 0.0)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _bounded(completed: float, total: float | None) -> tuple[float, float | None]:
    """Keep ``completed <= total``: a total that turns out too small grows to the count."""
    if total is not None and completed > total:
        total = completed
    return completed, total


class RichProgress:
    """A context manager whose instance is a ``ProgressFn``.

    The bars start with the first event: a command that fails before reporting anything prints
    its one error line and nothing else (rich draws an empty frame, a blank line, on stop). They
    are drawn only on a terminal: in a log or a pipe, rich would print each bar's last state on
    stderr, where scripts read errors. Messages (notes, warnings) are printed either way, each as
    one line.
    """

    def __init__(self, enabled: bool = True, console: Console | None = None):
        self.enabled = enabled
        console = console or err_console
        self._bars = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            AmountColumn(),
            SpeedColumn(),
            TimeElapsedColumn(),
            RemainingColumn("eta "),
            TextColumn("{task.fields[info]}"),
            console=console,
            disable=not (enabled and console.is_terminal),
        )
        self._tasks: dict[str, TaskID] = {}
        self._started = False

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self._started:
            self._bars.stop()
            self._started = False

    @property
    def bars(self) -> Progress:
        """The rich ``Progress`` being drawn (what tests render)."""
        return self._bars

    def __call__(self, event: Event) -> None:
        if not self._started:
            self._bars.start()
            self._started = True
        if event.message:  # one line in a log however long (the terminal wraps it); the library's text, no markup
            self._bars.console.print(event.message, highlight=False, markup=False, soft_wrap=True)
        figures = {k: v for k, v in event.info.items() if k != "eta"}  # the ETA has its own column
        info = "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
        completed, total = _bounded(event.completed, event.total)
        if event.task not in self._tasks:
            self._tasks[event.task] = self._bars.add_task(event.task, total=total, unit=event.unit, info=info, eta=None)
        fields: dict = {"eta": event.info["eta"]} if "eta" in event.info else {}
        if event.info or not event.message:  # a message alone leaves the figures shown
            fields["info"] = info
        self._bars.update(self._tasks[event.task], completed=completed, total=total, **fields)
