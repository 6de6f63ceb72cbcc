"""The run-dir contract that sampling relies on: ``config.json`` plus checkpoints.

``config.json`` keys:

* ``kind``: ``"diffusion"`` or ``"classifier"``;
* ``model_flags`` (diffusion; ``ModelFlags`` or, with ``large_size``, ``SuperResFlags``) or
  ``classifier_flags`` plus ``diffusion_flags`` (the noising process it was trained on), all
  as dicts in the original's flag names;
* ``train``: the resolved ``TrainConfig`` / ``ClassifierTrainConfig``;
* ``adm_version``; ``preset`` (the preset name, or null).

``latest_weights`` picks the weights to sample with: the newest checkpoint's EMA of the slowest
rate by default, its model weights otherwise.
"""

from __future__ import annotations

import json
import re
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
from adm.training.checkpoint import read_records

CONFIG = "config.json"
Kind = Literal["diffusion", "classifier"]


def run_config(
    kind: Kind,
    flags: ModelFlags | SuperResFlags | ClassifierFlags,
    train: dict[str, Any],
    *,
    diffusion_flags: DiffusionFlags | None = None,
    preset: str | None = None,
) -> dict[str, Any]:
    """The ``config.json`` document of a run."""
    doc: dict[str, Any] = {"kind": kind}
    if kind == "classifier":
        doc["classifier_flags"] = flags.flag_dict()
        doc["diffusion_flags"] = (diffusion_flags or DiffusionFlags()).flag_dict()
    else:
        doc["model_flags"] = flags.flag_dict()
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
    if doc.get("kind") not in ("diffusion", "classifier"):
        raise UsageError(f"{path} has no valid 'kind' (diffusion or classifier)")
    return doc


def run_flags(doc: dict[str, Any]) -> ModelFlags | SuperResFlags | ClassifierFlags:
    """The network flags recorded in a ``config.json`` document."""
    if doc["kind"] == "classifier":
        return parse_flags(ClassifierFlags, doc["classifier_flags"])
    return parse_model_flags(doc["model_flags"])


_MODEL = re.compile(r"^model(\d{6,})\.pt$")
_EMA = re.compile(r"^ema_([0-9.e-]+)_(\d{6,})\.pt$")


def _scan(run_dir: Path) -> tuple[int, str | None, dict[float, str]] | None:
    """Fallback for run dirs without a commit record (e.g. the original's files + a config.json)."""
    models: dict[int, str] = {}
    emas: dict[int, dict[float, str]] = {}
    for path in run_dir.iterdir():
        if m := _MODEL.match(path.name):
            models[int(m.group(1))] = path.name
        elif m := _EMA.match(path.name):
            emas.setdefault(int(m.group(2)), {})[float(m.group(1))] = path.name
    steps = set(models) | set(emas)
    if not steps:
        return None
    step = max(steps)
    return step, models.get(step), emas.get(step, {})


def latest_weights(
    run_dir: str | Path,
    prefer: Literal["ema", "model"] = "ema",
    *,
    rate: float | None = None,
) -> tuple[ModelFlags | SuperResFlags | ClassifierFlags, Path]:
    """(flags, weights file) of the newest checkpoint: an EMA (slowest rate, or ``rate``) or the model."""
    run_dir = Path(run_dir)
    flags = run_flags(read_run_config(run_dir))
    records = read_records(run_dir)
    if records:
        last = records[-1]
        step, model, emas = last.step, last.model, {float(k): v for k, v in last.emas.items()}
    else:
        scanned = _scan(run_dir)
        if scanned is None:
            raise UsageError(f"{run_dir} has no checkpoints yet", "train longer or lower --save-every")
        step, model, emas = scanned
    if rate is not None and float(rate) not in emas:
        have = ", ".join(str(r) for r in sorted(emas)) or "none"
        raise UsageError(f"{run_dir} has no EMA of rate {rate} at step {step} (it has: {have})")
    if prefer == "ema" and emas:
        chosen = emas[float(rate)] if rate is not None else emas[max(emas)]
    elif model is not None:
        chosen = model
    else:
        chosen = emas[max(emas)]
    return flags, run_dir / chosen


NETWORK_KEYS = ("model_flags", "classifier_flags", "diffusion_flags")
RUNTIME_FLAGS = {"use_checkpoint", "use_fp16", "classifier_use_fp16"}  # do not change the network


def open_run(run_dir: Path, doc: dict[str, Any], *, resume: bool) -> bool:
    """Check ``run_dir`` before anything is written; True when it holds a checkpoint to continue.

    A run dir with checkpoints continues only with the same kind and network flags; ``resume``
    insists that there is something to continue.
    """
    records = read_records(run_dir) if run_dir.is_dir() else []
    if not records:
        if resume:
            raise UsageError(f"nothing to resume: {run_dir} has no checkpoint", "drop --resume to start a new run")
        return False
    old = read_run_config(run_dir)
    if old.get("kind") != doc["kind"]:
        raise UsageError(f"{run_dir} holds a {old.get('kind')} run, not a {doc['kind']} run", "use another --run-dir")
    for key in NETWORK_KEYS:
        before, after = old.get(key) or {}, doc.get(key) or {}
        for name in sorted(set(before) | set(after)):
            if name not in RUNTIME_FLAGS and before.get(name) != after.get(name):
                raise UsageError(
                    f"{run_dir} was trained with --{name} {before.get(name)}, not {after.get(name)}",
                    "continue with the same flags, or use another --run-dir",
                )
    return True
