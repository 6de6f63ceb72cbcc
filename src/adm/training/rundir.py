"""The run-dir contract that sampling relies on: ``config.json`` plus checkpoints.

``config.json`` keys:

* ``kind``: the training task (``adm.training.tasks``): ``"diffusion"``, ``"classifier"`` or a
  plugin's; a kind no installed task has is a one-line error;
* the network's flags under the key of the task's flag set: ``model_flags`` (``ModelFlags`` or,
  with ``large_size``, ``SuperResFlags``) or ``classifier_flags``, plus ``diffusion_flags`` (the
  noising process) for a task that records it (the classifier), all as dicts in the original's
  flag names;
* ``train``: the resolved config of the task (``TrainConfig`` / ``ClassifierTrainConfig`` / ...);
* ``adm_version``; ``preset`` (the preset name, or null).

``read_run`` reads a run dir once (``config.json`` and the commit record); its ``weights`` picks
the weights to sample with: the newest checkpoint's EMA of the slowest rate by default, its model
weights otherwise. A run dir named with ``@STEP`` (``runs/x@2000``) means that step's checkpoint
instead of the newest, and ``@best`` the checkpoint ``best.json`` names (``split_step``): the one
whose evaluation (``adm train --eval-every``) scored best. ``newest_checkpoint`` is the one rule
for "can this run dir be continued".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from adm._version import __version__
from adm.core.errors import UsageError
from adm.core.fileio import write_text_atomic
from adm.spec.flags import (
    ClassifierFlags,
    DiffusionFlags,
    ModelFlags,
    SuperResFlags,
    parse_flags,
    parse_model_flags,
)
from adm.training.checkpoint import CheckpointRecord, read_records
from adm.training.tasks import (
    NOISE_KEY,
    TaskSpec,
    find_task,
    get_task,
    task_kinds,
    unknown_kind_hint,
)

CONFIG = "config.json"
BEST = "best.json"


def run_config(
    kind: str,
    flags: ModelFlags | SuperResFlags | ClassifierFlags,
    train: dict[str, Any],
    *,
    diffusion_flags: DiffusionFlags | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """The ``config.json`` document of a run of the task ``kind`` (its flags under its flag set's key)."""
    task = get_task(kind)
    doc: dict[str, Any] = {"kind": kind, task.flags_key: flags.flag_dict()}
    if task.noise:
        doc[NOISE_KEY] = (diffusion_flags or DiffusionFlags()).flag_dict()
    doc.update(train=train, adm_version=__version__, preset=preset)
    return doc


def write_run_config(run_dir: Path, doc: dict[str, Any]) -> None:
    write_text_atomic(Path(run_dir) / CONFIG, json.dumps(doc, indent=2) + "\n")


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of a run dir (a one-line UsageError when there is none or it is damaged)."""
    path = Path(run_dir) / CONFIG
    if not Path(run_dir).is_dir():
        raise UsageError(f"run dir {run_dir} does not exist")
    if not path.is_file():
        raise UsageError(f"{run_dir} is not an adm run dir (no {CONFIG})", "train into it with `adm train --run-dir`")
    try:
        doc = json.loads(path.read_text())
    except ValueError as err:
        raise UsageError(f"{path} is not valid JSON ({err})") from None
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if not isinstance(kind, str) or not kind:
        raise UsageError(f"{path} has no valid 'kind' ({' or '.join(task_kinds())})")
    if find_task(kind) is None:
        raise UsageError(f"{path} is a run of kind {kind!r}, which no installed training task trains",
                         unknown_kind_hint(kind))
    return doc


def task_of(doc: dict[str, Any]) -> TaskSpec:
    """The training task of a ``config.json`` document (read by ``read_run_config``)."""
    return get_task(doc["kind"])


def run_flags(doc: dict[str, Any]) -> ModelFlags | SuperResFlags | ClassifierFlags:
    """The network flags recorded in a ``config.json`` document (under its task's flag set)."""
    task = task_of(doc)
    if task.flags == "classifier":
        return parse_flags(ClassifierFlags, doc[task.flags_key])
    return parse_model_flags(doc[task.flags_key])


_MODEL = re.compile(r"^model(\d{6,})\.pt$")
_EMA = re.compile(r"^ema_([0-9.e-]+)_(\d{6,})\.pt$")


def _scan(run_dir: Path) -> dict[int, tuple[str | None, dict[float, str]]]:
    """Fallback for run dirs without a commit record (e.g. the original's files + a config.json):
    step -> (model file, EMA files) from the file names."""
    models: dict[int, str] = {}
    emas: dict[int, dict[float, str]] = {}
    for path in run_dir.iterdir():
        if m := _MODEL.match(path.name):
            models[int(m.group(1))] = path.name
        elif m := _EMA.match(path.name):
            emas.setdefault(int(m.group(2)), {})[float(m.group(1))] = path.name
    return {step: (models.get(step), emas.get(step, {})) for step in sorted(set(models) | set(emas))}


def _checkpoints(run_dir: Path) -> dict[int, tuple[str | None, dict[float, str]]]:
    """Every checkpoint of a run dir, step -> (model file, EMA files): the commit record's, or the
    files' when there is no record."""
    records = read_records(run_dir)
    if records:
        return {r.step: (r.model, {float(k): v for k, v in r.emas.items()}) for r in records}
    return _scan(run_dir)


@dataclass(frozen=True)
class Best:
    """``best.json``: the checkpoint whose evaluation scored best, and by what."""

    step: int
    metric: str  # the metrics.jsonl key compared (digits_fd, fid, ...)
    value: float
    direction: Literal["min", "max"]  # lower or higher is better

    def to_json(self) -> dict[str, Any]:
        return {"step": self.step, "metric": self.metric, "value": self.value, "direction": self.direction}


def read_best(run_dir: str | Path) -> Best | None:
    """The run's best checkpoint (None: it was never evaluated)."""
    path = Path(run_dir) / BEST
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return Best(int(data["step"]), str(data["metric"]), float(data["value"]), data["direction"])
    except (ValueError, KeyError, TypeError) as err:
        raise UsageError(f"{path} is damaged ({err})", "delete it: the next evaluation writes it again") from None


def write_best(run_dir: str | Path, best: Best) -> None:
    write_text_atomic(Path(run_dir) / BEST, json.dumps(best.to_json(), indent=1) + "\n")


def split_step(run_dir: str | Path) -> tuple[Path, int | None]:
    """``runs/x@2000`` → ``(runs/x, 2000)``: a run dir at a given step; ``runs/x@best`` the step
    its ``best.json`` names. A path without ``@``, or an existing folder whose name has an ``@``,
    is itself with step None."""
    path = Path(run_dir)
    base, at, step = path.name.rpartition("@")
    if not at or path.is_dir():
        return path, None
    if base and step == "best":
        return path.with_name(base), _best_step(path.with_name(base))
    if not base or not step.isdigit():
        raise UsageError(f"{run_dir}: after @ comes the step of a checkpoint, or best",
                         f"e.g. {base or 'runs/x'}@2000 or {base or 'runs/x'}@best")
    return path.with_name(base), int(step)


def _best_step(run_dir: Path) -> int:
    best = read_best(run_dir) if run_dir.is_dir() else None
    if best is None:
        read_run_config(run_dir)  # no such run dir: that error first
        raise UsageError(f"{run_dir}@best: the run was never evaluated (no {BEST})",
                         f"train it with --eval-every N --eval-metric NAME, or name a step: {run_dir}@STEP")
    return best.step


def newest_checkpoint(run_dir: str | Path) -> CheckpointRecord | None:
    """The committed checkpoint a run in ``run_dir`` continues from; None: there is nothing to
    continue (no folder, or no commit record yet), so a run there starts fresh."""
    run_dir = Path(run_dir)
    records = read_records(run_dir) if run_dir.is_dir() else []
    return records[-1] if records else None


@dataclass(frozen=True)
class SavedRun:
    """A run dir as sampling reads it, each file once: its ``config.json`` and one checkpoint, the
    newest or a chosen step's (from the commit record, or file names for the original's files
    beside a ``config.json``)."""

    path: Path
    doc: dict[str, Any]
    step: int | None = None  # None: no checkpoint yet
    model: str | None = None
    emas: dict[float, str] = field(default_factory=dict)
    steps: tuple[int, ...] = ()  # every checkpoint the run dir has (oldest first)

    @property
    def kind(self) -> str:
        return self.doc["kind"]

    @property
    def task(self) -> TaskSpec:
        """What trained it: its flag set, and whether it yields a generator to sample."""
        return task_of(self.doc)

    @property
    def flags(self) -> ModelFlags | SuperResFlags | ClassifierFlags:
        return run_flags(self.doc)

    def weights(self, prefer: Literal["ema", "model"] = "ema", *, rate: float | None = None) -> Path:
        """The checkpoint's weights file: an EMA (slowest rate, or ``rate``) or the model."""
        if self.step is None:
            raise UsageError(f"{self.path} has no checkpoints yet", "train longer or lower --save-every")
        emas = self.emas
        if rate is not None and float(rate) not in emas:
            have = ", ".join(str(r) for r in sorted(emas)) or "none"
            raise UsageError(f"{self.path} has no EMA of rate {rate} at step {self.step} (it has: {have})")
        if prefer == "ema" and emas:
            chosen = emas[float(rate)] if rate is not None else emas[max(emas)]
        else:
            chosen = self.model if self.model is not None else emas[max(emas)]
        return self.path / chosen


def read_run(run_dir: str | Path, step: int | None = None) -> SavedRun:
    """Read a run dir once: ``config.json`` (a one-line error if missing) and a checkpoint.

    The newest checkpoint, or the one of ``step`` (also given as ``runs/x@STEP``: ``split_step``);
    a step the run dir has no checkpoint of is a one-line error listing the steps it has.
    """
    path, at = split_step(run_dir)
    if step is not None and at is not None and step != at:
        raise UsageError(f"{run_dir} names step {at}, not {step}", "give the step once")
    step = at if step is None else step
    doc = read_run_config(path)
    found = _checkpoints(path)
    if step is None:
        if not found:
            return SavedRun(path, doc)
        step = max(found)
    elif step not in found:
        have = ", ".join(str(s) for s in sorted(found)) or "none yet"
        raise UsageError(f"{path} has no checkpoint at step {step} (it has: {have})",
                         f"pick one of those steps, e.g. {path}@{max(found)}" if found else "train it first")
    model, emas = found[step]
    return SavedRun(path, doc, step, model, emas, tuple(sorted(found)))


def latest_weights(
    run_dir: str | Path,
    prefer: Literal["ema", "model"] = "ema",
    *,
    rate: float | None = None,
) -> tuple[ModelFlags | SuperResFlags | ClassifierFlags, Path]:
    """(flags, weights file) of the newest checkpoint: an EMA (slowest rate, or ``rate``) or the model."""
    run = read_run(run_dir)
    return run.flags, run.weights(prefer, rate=rate)


NETWORK_KEYS = ("model_flags", "classifier_flags", "diffusion_flags")
RUNTIME_FLAGS = {"use_checkpoint", "use_fp16", "classifier_use_fp16"}  # do not change the network


def _with_defaults(key: str, values: dict[str, Any]) -> dict[str, Any]:
    """Recorded flags with the defaults filled in: a flag added to adm since a run was written is
    absent from its ``config.json`` and means its default (which reproduces the earlier network)."""
    if not values:
        return values
    cls = {"model_flags": SuperResFlags if "large_size" in values else ModelFlags,
           "classifier_flags": ClassifierFlags, "diffusion_flags": DiffusionFlags}[key]
    return {**{name: info.default for name, info in cls.model_fields.items()}, **values}


def open_run(run_dir: Path, doc: dict[str, Any], *, resume: bool) -> bool:
    """Check ``run_dir`` before anything is written; True when it holds a checkpoint to continue.

    A run dir with checkpoints continues only with the same kind and network flags; ``resume``
    insists that there is something to continue.
    """
    if newest_checkpoint(run_dir) is None:
        if resume:
            raise UsageError(f"nothing to resume: {run_dir} has no checkpoint", "drop --resume to start a new run")
        return False
    old = read_run_config(run_dir)
    if old.get("kind") != doc["kind"]:
        raise UsageError(f"{run_dir} holds a {old.get('kind')} run, not a {doc['kind']} run", "use another --run-dir")
    for key in NETWORK_KEYS:
        before, after = _with_defaults(key, old.get(key) or {}), _with_defaults(key, doc.get(key) or {})
        for name in sorted(set(before) | set(after)):
            if name not in RUNTIME_FLAGS and before.get(name) != after.get(name):
                raise UsageError(
                    f"{run_dir} was trained with --{name} {before.get(name)}, not {after.get(name)}",
                    "continue with the same flags, or use another --run-dir",
                )
    return True
