"""A sampling run to an ``.npz``: sharded, resumable, split across torchrun ranks.

Ranks share the output folder. Rank 0 opens the shard store (or refuses a store made by another
command) and decides which samples are missing; every rank then samples the batches ``j`` with
``j % world_size == rank`` and writes each as a shard; rank 0 assembles the final npz (the
original's format: ``arr_0`` uint8 NHWC, ``arr_1`` int64 labels), a PNG grid and a JSON sidecar.
Because sample *i* depends on ``(seed, i)`` only, the result does not depend on batch size, the
number of processes, or interruptions.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from adm.data.grid import save_grid
from adm.data.images import ImageCollection
from adm.distributed import Dist
from adm.errors import UsageError
from adm.fileio import atomic_path, write_text_atomic
from adm.progress import ProgressFn, report
from adm.sampling.generate import SamplingPlan, from_uint8, generate_batch
from adm.sampling.shards import ShardStore, describe_difference, same_command


@dataclass(frozen=True)
class SampleJob:
    """What to write: ``num_samples`` images to ``out`` in batches of ``batch_size``."""

    out: Path
    num_samples: int
    batch_size: int
    plan: SamplingPlan
    seed: int = 0
    classes: str | list[int] = "random"
    identity: dict[str, Any] = field(default_factory=dict)  # what made the model: preset, checkpoints
    grid_size: int = 64
    num_classes: int | None = None  # lays a balanced run's grid out one class per column
    notes: dict[str, Any] = field(default_factory=dict)  # written to the sidecar, not part of the key
    overwrite: bool = False  # replace an existing output (and its shards) made by another command

    def key(self) -> dict[str, Any]:
        """Everything that changes the images (batch size, device and world size do not)."""
        return {**self.identity, **self.plan.key(), "seed": self.seed, "classes": self.classes}

    def grid_columns(self) -> int | None:
        """One column per class when classes are cycled (a class per column reads best)."""
        if isinstance(self.classes, list) and 1 < len(self.classes) <= 20:
            return len(self.classes)
        if self.classes == "balanced" and self.num_classes and self.num_classes <= 20:
            return self.num_classes
        return None

    def validate(self) -> None:
        if self.num_samples < 1:
            raise UsageError(f"--num-samples must be at least 1, got {self.num_samples}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.out.suffix != ".npz":
            raise UsageError(f"--out must name an .npz file, got {self.out}")
        if not 0 <= self.seed < 2**63:
            raise UsageError(f"--seed must be a non-negative integer below 2^63, got {self.seed}")


@dataclass(frozen=True)
class JobResult:
    path: Path
    num_samples: int
    already_done: int  # samples found finished (shards or a complete output) and not recomputed
    computed: int  # samples this process computed


def sidecar_path(out: Path) -> Path:
    return out.with_suffix(".json")


def grid_path(out: Path) -> Path:
    return out.with_suffix(".png")


def _remove_output(out: Path) -> None:
    for path in (out, sidecar_path(out), grid_path(out)):
        path.unlink(missing_ok=True)


def _finished(job: SampleJob, store: ShardStore) -> bool:
    """Whether ``job.out`` already holds this job's samples; reuses a shorter run of the same command.

    An output made by a different command is refused (``overwrite`` replaces it), as are shards
    of one. A complete output with fewer samples of the same command becomes the first shard, so
    growing ``-n`` samples only the new ones.
    """
    if job.overwrite:
        _remove_output(job.out)
        store.remove()
        return False
    if not job.out.exists():
        return False
    retry = "pass --overwrite to replace it, or choose another --out"
    try:
        meta = json.loads(sidecar_path(job.out).read_text())
        made, key = int(meta["num_samples"]), meta["key"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"{job.out} exists and was not written by adm sample (no readable {sidecar_path(job.out).name})", retry) from None
    if not same_command(key, job.key()):
        raise UsageError(f"{job.out} holds samples of a different command ({describe_difference(key, job.key())})", retry)
    if made == job.num_samples:
        return True
    if made > job.num_samples:
        raise UsageError(f"{job.out} already holds {made} samples of this command, more than the {job.num_samples} asked for",
                         "ask for at least as many, " + retry)
    store.open(job.key())
    with np.load(job.out, allow_pickle=False) as data:
        store.write(0, data["arr_0"], data["arr_1"] if "arr_1" in data.files else None)
    return False


def _batches(missing: list[int], batch_size: int) -> list[list[int]]:
    """Contiguous runs of missing indices cut into batches (a shard is one contiguous range)."""
    batches, run = [], []
    for index in missing:
        if run and (index != run[-1] + 1 or len(run) == batch_size):
            batches.append(run)
            run = []
        run.append(index)
    if run:
        batches.append(run)
    return batches


def run_sample_job(
    loaded,
    job: SampleJob,
    dist: Dist | None = None,
    *,
    on_progress: ProgressFn | None = None,
    base: ImageCollection | None = None,
    base_labels: np.ndarray | None = None,
    step_callback: Callable[[dict], None] | None = None,
) -> JobResult:
    """Sample ``job`` with ``loaded`` (an ``adm.LoadedModel``); upsamplers read ``base`` images."""
    dist = dist or Dist(device=loaded.device)
    job.validate()
    if base is not None:
        _check_base(loaded.flags, base, base_labels, job.num_samples)
    store = ShardStore(job.out)
    finished = _finished(job, store) if dist.is_main else None
    if dist.broadcast_object(finished):
        return JobResult(job.out, job.num_samples, job.num_samples, 0)
    fresh = dist.is_main and not store.folder.exists()
    if dist.is_main:
        store.open(job.key())
    dist.barrier()
    try:
        return _sample_missing(loaded, job, store, dist, on_progress, base, base_labels, step_callback)
    except BaseException:
        if fresh and not store.done():  # nothing finished: leave nothing behind
            store.remove()
        raise


def _sample_missing(loaded, job: SampleJob, store: ShardStore, dist: Dist, on_progress, base, base_labels,
                    step_callback) -> JobResult:
    flags = loaded.flags
    upsampler = base is not None
    missing = dist.broadcast_object(store.missing(job.num_samples) if dist.is_main else None)
    already = job.num_samples - len(missing)
    mine = [b for j, b in enumerate(_batches(missing, job.batch_size)) if j % dist.world_size == dist.rank]
    size = flags.large_size if upsampler else flags.image_size
    computed = 0
    task = "upsampling" if upsampler else "sampling"
    report(on_progress, task, already, job.num_samples, unit="img",
           message=f"resuming: {already} of {job.num_samples} samples already done" if already else None)
    for indices in mine:
        low_res = labels = None
        if upsampler:
            (chunk,) = base.batches(len(indices), indices[0], indices[-1] + 1)
            low_res = from_uint8(chunk, loaded.device)
            labels = torch.from_numpy(base_labels[indices[0] : indices[-1] + 1]) if base_labels is not None else None
        images, batch_labels = generate_batch(
            loaded.model, loaded.schedule, loaded.parameterization, job.plan, indices, job.seed,
            image_shape=(3, size, size), num_classes=flags.num_classes, class_cond=flags.class_cond,
            classes=job.classes, classifier=loaded.classifier, low_res=low_res, labels=labels,
            device=loaded.device, callback=step_callback,
        )
        store.write(indices[0], images, batch_labels)
        computed += len(indices)
        report(on_progress, task, min(job.num_samples, already + computed * dist.world_size), job.num_samples, unit="img")
    dist.barrier()
    if dist.is_main:
        _finish(job, store)
    dist.barrier()
    return JobResult(job.out, job.num_samples, already, computed)


def _finish(job: SampleJob, store: ShardStore) -> None:
    images, labels = store.assemble(job.num_samples)
    arrays = {"arr_0": images} if labels is None else {"arr_0": images, "arr_1": labels}
    with atomic_path(job.out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    shown = min(job.grid_size, len(images))
    if shown:
        save_grid(images[:shown], grid_path(job.out), columns=job.grid_columns())
    meta = {
        "num_samples": job.num_samples,
        "shape": list(images.shape),
        "key": job.key(),
        **job.notes,
        "grid": {"file": grid_path(job.out).name, "count": shown, "order": "row-major"},
        "grid_labels": labels[:shown].tolist() if labels is not None else None,
    }
    write_text_atomic(sidecar_path(job.out), json.dumps(meta, indent=2))
    store.remove()


def _check_base(flags, base: ImageCollection, base_labels: np.ndarray | None, num_samples: int) -> None:
    if (base.height, base.width) != (flags.small_size, flags.small_size):
        raise UsageError(
            f"base samples are {base.width}x{base.height}, the upsampler expects {flags.small_size}x{flags.small_size}"
        )
    if num_samples > base.count:
        raise UsageError(f"asked for {num_samples} upsampled images but the base has only {base.count}")
    if flags.class_cond and base_labels is None:
        raise UsageError("this upsampler is class-conditional but the base samples carry no labels (arr_1)")
    if base_labels is not None:
        if len(base_labels) < base.count:
            raise UsageError(f"base samples have {base.count} images but {len(base_labels)} labels")
        bad = base_labels[(base_labels < 0) | (base_labels >= flags.num_classes)]
        if flags.class_cond and bad.size:
            raise UsageError(f"base label {int(bad[0])} is out of range for {flags.num_classes} classes")
