"""Watching a run: monitors the engine calls with the EMA model at chosen steps, and the best checkpoint.

This is the seam between training and the layers above it: ``adm.training`` never imports a
sampler or a metric (``tests/test_architecture.py``). A *monitor* (``Monitor``) has

* ``name``: what messages call it; ``every``: it runs at every step that is a multiple (0: never);
* ``objective``: an ``Objective`` (a metrics key, and whether lower or higher is better) when its
  numbers rank checkpoints, else None; at most one monitor of a run has one;
* ``__call__(model, step) -> Observation``: ``model`` is an eval-mode copy of the network (on the
  training device, gradients off) holding the weights ``adm sample --run-dir`` would sample at
  that step, the slowest EMA (else the raw weights); the observation holds numbers for
  ``metrics.jsonl``, images for TensorBoard and lines for the progress display.

The API builds monitors (``adm.api.monitors``: samplers and metrics live there). It installs a
*factory* with ``watching(factory)`` around a training call; ``run_task`` asks it once, before
anything is written, for the monitors of the run it is given (``WatchedRun``: the ``config.json``
document, the config, the run dir, ``dist``, ``on_progress``). Any task trained through
``run_task`` is watched that way without knowing it.

``Watcher`` is the engine's side: which monitors are due, the eval copy, every RNG state saved and
restored around them (a watched run trains bitwise the weights of an unwatched one, and a resumed
run those of a straight one), the time they take (kept out of images/s and counted in the ETA),
and the best checkpoint: ``best.json`` (``adm.training.rundir``), written once the checkpoint of
its step is committed, which ``--keep`` then never deletes.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from torch import nn

from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn
from adm.training.checkpoint import read_records
from adm.training.config import CommonTrainConfig, WatchConfig
from adm.training.metrics import EVAL_PLOT, METRICS, plot_run, read_metrics
from adm.training.resume import restore_rng, rng_state
from adm.training.rundir import Best, read_best, write_best
from adm.training.trainer import Trainer


@dataclass(frozen=True)
class Objective:
    """The number that ranks checkpoints: a metrics key and which way is better."""

    key: str
    direction: Literal["min", "max"] = "min"

    def better(self, value: float, than: float) -> bool:
        return value < than if self.direction == "min" else value > than


@dataclass
class Observation:
    """What the monitors saw at one step."""

    metrics: dict[str, float] = field(default_factory=dict)  # into metrics.jsonl (and TensorBoard's eval/)
    images: dict[str, np.ndarray] = field(default_factory=dict)  # tag -> uint8 [H, W, C] (TensorBoard)
    notes: list[str] = field(default_factory=list)  # one line each on the progress display

    def add(self, other: Observation) -> None:
        self.metrics.update(other.metrics)
        self.images.update(other.images)
        self.notes.extend(other.notes)


class Monitor(Protocol):
    """Something the engine calls with the watched weights every ``every`` steps (module docstring)."""

    name: str
    every: int
    objective: Objective | None

    def __call__(self, model: nn.Module, step: int) -> Observation: ...


@dataclass(frozen=True)
class WatchedRun:
    """What a monitor factory is told about the run it is to watch (before anything is written)."""

    doc: dict[str, Any]  # the config.json document: kind, the network's flags (class count filled in), train
    config: CommonTrainConfig
    run_dir: Path
    dist: Dist
    on_progress: ProgressFn | None = None


MonitorFactory = Callable[[WatchedRun], Sequence[Monitor]]
_FACTORY: ContextVar[MonitorFactory | None] = ContextVar("adm_monitor_factory", default=None)


@contextlib.contextmanager
def watching(factory: MonitorFactory) -> Iterator[None]:
    """Training calls inside this block are watched by the monitors ``factory`` makes for them."""
    token = _FACTORY.set(factory)
    try:
        yield
    finally:
        _FACTORY.reset(token)


def wants_watching(config: CommonTrainConfig) -> bool:
    """Whether the config asks for sample grids or evaluations."""
    return isinstance(config, WatchConfig) and bool(config.sample_every or config.eval_every)


def monitors_for(run: WatchedRun) -> list[Monitor]:
    """The monitors of ``run`` from the installed factory; a config asking for them without one
    (``adm.training``'s functions called directly) is a one-line error, not a silent no-op."""
    factory = _FACTORY.get()
    if factory is None:
        if wants_watching(run.config):
            raise UsageError("sample grids and evaluations during training are drawn by adm.train / adm train",
                             "call adm.train (adm.api.training), or set sample_every=0 and eval_every=0")
        return []
    monitors = list(factory(run))
    if sum(m.objective is not None for m in monitors) > 1:
        raise ValueError("at most one monitor of a run may rank checkpoints (an objective)")
    return monitors


def watched_rate(config: CommonTrainConfig) -> float | None:
    """The EMA the monitors see: the slowest rate, the one ``adm sample --run-dir`` samples and
    ``@best`` therefore names (None: no EMA, the raw weights)."""
    return max(config.ema_rates) if config.ema_rates else None


def watched_model(trainer: Trainer, rate: float | None) -> nn.Module:
    """An eval-mode copy of the network with the EMA of ``rate`` (None: the current weights).

    ``deepcopy`` of a Parameter leaves its ``.grad`` behind, so the copy costs one set of weights.
    """
    model = copy.deepcopy(trainer.model)
    if rate is not None:
        model.load_state_dict(trainer.ema.state_dict(rate, trainer.model))
    return model.requires_grad_(False).eval()


def best_of(records: Sequence[dict[str, Any]], objective: Objective, steps: set[int]) -> Best | None:
    """The first record with the best finite value of the objective among ``steps`` (checkpoints kept)."""
    best = None
    for record in records:
        value, step = record.get(objective.key), record.get("step")
        if step not in steps or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if best is None or objective.better(float(value), best.value):
            best = Best(int(step), objective.key, float(value), objective.direction)
    return best


class Watcher:
    """The engine's side of the monitors: when, with what weights, the RNG kept, the best checkpoint."""

    def __init__(self, monitors: Sequence[Monitor], run_dir: Path, config: CommonTrainConfig, dist: Dist):
        self.monitors = list(monitors)
        self.run_dir, self.dist = Path(run_dir), dist
        self.rate = watched_rate(config)
        self.objective = next((m.objective for m in self.monitors if m.objective is not None), None)
        self.best: Best | None = None
        self.pending: Best | None = None  # a better value whose checkpoint is not committed yet
        self.evaluated: int | None = None  # the last step whose observation has the objective
        self.spent: dict[int, tuple[float, int]] = {}  # id(monitor) -> (seconds, calls) on rank 0: speed and ETA

    def open(self, start: int) -> None:
        """The best so far: from ``metrics.jsonl`` (up to ``start``, at checkpoints still kept), else
        ``best.json`` as it is (kept, and protected, until an evaluation replaces it)."""
        self.best = read_best(self.run_dir) if self.dist.is_main else None
        if self.objective is None or not self.dist.is_main or not (self.run_dir / METRICS).is_file():
            return
        kept = {r.step for r in read_records(self.run_dir)}
        records = [r for r in read_metrics(self.run_dir) if r.get("step", 0) <= start]
        found = best_of(records, self.objective, kept)
        if found is not None and found != self.best:
            write_best(self.run_dir, found)
            self.best = found

    def due(self, step: int) -> list[Monitor]:
        return [m for m in self.monitors if m.every and step % m.every == 0]

    def needs_checkpoint(self, step: int) -> bool:
        """An evaluation step: its checkpoint is saved, so that the best one always exists."""
        return any(m.objective is not None for m in self.due(step))

    def __call__(self, trainer: Trainer, step: int) -> Observation | None:
        """Run the monitors due at ``step`` on rank 0 (the others wait); None when none is due."""
        due = self.due(step)
        if not due:
            return None
        seen = Observation()
        if self.dist.is_main:
            saved = rng_state(self.dist.device)
            try:
                model = watched_model(trainer, self.rate)
                for monitor in due:
                    began = time.perf_counter()
                    seen.add(monitor(model, step))
                    self._spend(monitor, time.perf_counter() - began)
                del model
            finally:
                restore_rng(saved, self.dist.device)
            self._rank(seen, step)
        self.dist.barrier()
        return seen

    def _spend(self, monitor: Monitor, seconds: float) -> None:
        total, calls = self.spent.get(id(monitor), (0.0, 0))
        self.spent[id(monitor)] = (total + seconds, calls + 1)

    def _rank(self, seen: Observation, step: int) -> None:
        """Note the objective's value (first) and the other numbers; a better value waits for its checkpoint."""
        if not seen.metrics:
            return
        values = dict(seen.metrics)
        line, mark = [], ""
        if self.objective is not None and self.objective.key in values:
            value = values.pop(self.objective.key)
            self.evaluated, best = step, self.best
            if best is None or best.metric != self.objective.key or self.objective.better(value, best.value):
                self.pending = Best(step, self.objective.key, value, self.objective.direction)
                mark = " (best so far)"
            line.append(f"{self.objective.key} {value:.4g}{mark}")
        line += [f"{key} {value:.4g}" for key, value in values.items()]
        seen.notes.append(f"step {step}: " + ", ".join(line))

    def protected(self) -> set[int]:
        """Checkpoint steps ``--keep`` must not delete: the best one."""
        return {self.best.step} if self.best is not None else set()

    def committed(self, step: int) -> None:
        """The checkpoint of ``step`` is committed (and its record logged): a pending best of that
        step becomes ``best.json``, and an evaluation there redraws ``eval.png``."""
        if not self.dist.is_main:
            return
        if self.pending is not None and self.pending.step == step:
            write_best(self.run_dir, self.pending)
            self.best, self.pending = self.pending, None
        if self.evaluated == step and self.objective is not None:
            better = "lower" if self.objective.direction == "min" else "higher"
            plot_run(self.run_dir, self.objective.key, path=self.run_dir / EVAL_PLOT,
                     title=f"{self.objective.key} of the samples while training ({better} is better)")

    @property
    def seconds(self) -> float:
        """Time spent in monitors so far (rank 0)."""
        return sum(seconds for seconds, _ in self.spent.values())

    def remaining_seconds(self, step: int, last: int) -> float:
        """Monitor time still to come after ``step`` up to ``last``, each at its mean cost so far."""
        total = 0.0
        for monitor in self.monitors:
            seconds, calls = self.spent.get(id(monitor), (0.0, 0))
            if monitor.every and calls:
                total += (last // monitor.every - step // monitor.every) * seconds / calls
        return total
