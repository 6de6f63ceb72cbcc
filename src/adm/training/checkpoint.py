"""Checkpoints in the run dir: the original's file names, atomic writes, a commit record, pruning.

Layout of a run dir (step = optimizer steps done, 6 digits as the original)::

    config.json               the run: kind, flags (original names), resolved training config
    checkpoint.json           commit record: the newest complete checkpoint and the ones kept
                              (snapshots, ``--snapshots``, are marked and never pruned)
    model000200.pt            network state_dict (fp32, loadable by the original)
    ema_0.9999_000200.pt      one per EMA rate, rate written as Python str(float)
    opt000200.pt              AdamW state_dict
    state000200.pt            trainer state: step, data position, RNG states of every rank,
                              timestep-sampler and loss-scaler state
    metrics.jsonl             one JSON record per logged step
    loss.png                  with --plot
    best.json, eval.png       with --eval-every: the best-scoring checkpoint (kept), the metric's curve
    samples/                  with --sample-every: 000200.png, ... and latest.png
    tb/                       with --log tensorboard: TensorBoard event files

Every file is written to a temporary name and renamed; ``checkpoint.json`` is rewritten last, so
a run killed in the middle of a save resumes from the previous complete checkpoint. Resume reads
the commit record, never step numbers parsed out of file names.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adm.core.errors import CheckpointError
from adm.core.fileio import atomic_path, write_text_atomic
from adm.hub.checkpoints import load_state_dict, save_state_dict, save_torch

POINTER = "checkpoint.json"


def model_file(step: int) -> str:
    return f"model{step:06d}.pt"


def ema_file(rate: float, step: int) -> str:
    return f"ema_{float(rate)}_{step:06d}.pt"


def opt_file(step: int) -> str:
    return f"opt{step:06d}.pt"


def state_file(step: int) -> str:
    return f"state{step:06d}.pt"


@dataclass
class CheckpointRecord:
    """The files of one complete checkpoint (names relative to the run dir)."""

    step: int
    model: str
    opt: str
    state: str
    emas: dict[str, str] = field(default_factory=dict)  # str(rate) -> file
    snapshot: bool = False  # a --snapshots step: kept whatever --keep says

    def files(self) -> list[str]:
        return [self.model, self.opt, self.state, *self.emas.values()]

    def to_json(self) -> dict[str, Any]:
        doc = {"step": self.step, "model": self.model, "opt": self.opt, "state": self.state, "emas": self.emas}
        return {**doc, "snapshot": True} if self.snapshot else doc

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CheckpointRecord:
        return cls(int(data["step"]), data["model"], data["opt"], data["state"], dict(data.get("emas", {})),
                   bool(data.get("snapshot", False)))


def read_records(run_dir: Path) -> list[CheckpointRecord]:
    """Complete checkpoints, oldest first (empty when none was committed)."""
    path = Path(run_dir) / POINTER
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text())
        return [CheckpointRecord.from_json(item) for item in data["checkpoints"]]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path} is damaged ({err})", "restore it or start a new --run-dir") from None


def _save_object(obj: Any, path: Path) -> None:
    with atomic_path(path) as tmp:
        save_torch(obj, tmp)


def write_checkpoint(
    run_dir: Path,
    step: int,
    *,
    model: Mapping[str, torch.Tensor],
    emas: Mapping[float, Mapping[str, torch.Tensor]],
    optimizer: Mapping[str, Any],
    state: Mapping[str, Any],
    keep: int,
    snapshot: bool = False,
    protect: Collection[int] = (),
) -> CheckpointRecord:
    """Write one checkpoint, commit it in ``checkpoint.json``, then delete those beyond ``keep``.

    ``keep`` counts the newest checkpoints; older ones are deleted unless they are snapshots
    (``snapshot``: marked in the commit record, so they stay even if a later call of the run
    names other snapshot steps) or their step is in ``protect`` (the best one, ``best.json``).
    """
    run_dir = Path(run_dir)
    record = CheckpointRecord(step, model_file(step), opt_file(step), state_file(step), snapshot=snapshot)
    save_state_dict(model, run_dir / record.model)
    for rate, weights in emas.items():
        record.emas[str(float(rate))] = ema_file(rate, step)
        save_state_dict(weights, run_dir / record.emas[str(float(rate))])
    _save_object(dict(optimizer), run_dir / record.opt)
    _save_object(dict(state), run_dir / record.state)

    records = [r for r in read_records(run_dir) if r.step != step] + [record]
    records.sort(key=lambda r: r.step)
    dropped = [r for r in records[:-keep] if not r.snapshot and r.step not in protect] if keep else []
    kept = [r for r in records if r not in dropped]
    write_text_atomic(run_dir / POINTER, json.dumps({"checkpoints": [r.to_json() for r in kept]}, indent=1) + "\n")
    still_used = {f for r in kept for f in r.files()}
    for old in dropped:
        for name in old.files():
            if name not in still_used:
                with contextlib.suppress(FileNotFoundError):
                    (run_dir / name).unlink()
    return record


@dataclass
class LoadedCheckpoint:
    record: CheckpointRecord
    model: dict[str, torch.Tensor]
    emas: dict[float, dict[str, torch.Tensor]]
    optimizer: dict[str, Any]
    state: dict[str, Any]


def _load_object(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, EOFError) as err:
        raise CheckpointError(f"cannot read {path} ({err})", "the checkpoint is damaged; delete it from checkpoint.json") from None


def load_checkpoint(run_dir: Path, record: CheckpointRecord) -> LoadedCheckpoint:
    """The files of the committed checkpoint ``record`` of ``run_dir``, read back."""
    run_dir = Path(run_dir)
    return LoadedCheckpoint(
        record=record,
        model=load_state_dict(run_dir / record.model),
        emas={float(rate): load_state_dict(run_dir / name) for rate, name in record.emas.items()},
        optimizer=_load_object(run_dir / record.opt),
        state=_load_object(run_dir / record.state),
    )
