"""A sampling run to an ``.npz``: sharded, resumable, split across torchrun ranks.

Ranks share the output folder. Rank 0 opens the shard store (or refuses a store made by another
command) and decides which samples are missing; every rank then samples the batches ``j`` with
``j % world_size == rank`` and writes each as a shard; rank 0 assembles the final npz (the
original's format: ``arr_0`` uint8 NHWC, ``arr_1`` int64 labels), a PNG grid and a JSON sidecar.
Because sample *i* depends on ``(seed, i)`` only, the result does not depend on batch size, the
number of processes, or interruptions.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.fileio import atomic_path, make_folder, write_json_atomic
from adm.core.locks import exclusive
from adm.core.progress import ProgressFn, report
from adm.core.signals import Interrupted, signal_of
from adm.data.grid import save_grid
from adm.sampling.batches import Producer
from adm.sampling.settings import SamplingPlan
from adm.sampling.shards import ShardStore, describe_difference, same_command


@dataclass(frozen=True)
class SampleJob:
    """What to write: ``num_samples`` images to ``out`` in batches of ``batch_size``."""

    out: Path | None  # None: in memory (``sample_in_memory``), no files at all
    num_samples: int
    batch_size: int
    plan: SamplingPlan
    seed: int = 0
    classes: str | list[int] = "random"
    identity: dict[str, Any] = field(default_factory=dict)  # what made the model: preset, checkpoints
    grid_size: int = 64
    notes: dict[str, Any] = field(default_factory=dict)  # written to the sidecar, not part of the key
    overwrite: bool = False  # replace an existing output (and its shards) made by another command
    extra_outputs: dict[str, Path] = field(default_factory=dict)  # producer arrays to write, by name

    def key(self) -> dict[str, Any]:
        """Everything that changes the images (batch size, device and world size do not)."""
        return {**self.identity, **self.plan.key(), "seed": self.seed, "classes": self.classes}

    def validate(self) -> None:
        if self.num_samples < 1:
            raise UsageError(f"--num-samples must be at least 1, got {self.num_samples}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.out is not None and self.out.suffix != ".npz":
            raise UsageError(f"--out must name an .npz file, got {self.out}")
        if not 0 <= self.seed < 2**63:
            raise UsageError(f"--seed must be a non-negative integer below 2^63, got {self.seed}")


@dataclass(frozen=True)
class JobResult:
    path: Path | None  # None for a run in memory
    num_samples: int
    already_done: int  # samples found finished (shards or a complete output) and not recomputed
    computed: int  # samples this process computed


def sidecar_path(out: Path) -> Path:
    return out.with_suffix(".json")


def grid_path(out: Path) -> Path:
    return out.with_suffix(".png")


def lock_path(out: Path) -> Path:
    """The lock a run writing ``out`` holds (removed when it ends)."""
    return out.with_name(f".{out.name}.lock")


RETRY = "pass --overwrite to replace it, or choose another --out"


def _remove_output(job: SampleJob) -> None:
    for path in (job.out, sidecar_path(job.out), grid_path(job.out), *job.extra_outputs.values()):
        path.unlink(missing_ok=True)


def _read_sidecar(out: Path) -> dict[str, Any] | None:
    """The sidecar beside ``out`` if adm wrote it (a JSON object with the run's key), else None."""
    try:
        meta = json.loads(sidecar_path(out).read_text())
        if isinstance(meta, dict) and "key" in meta and int(meta["num_samples"]) >= 0:
            return meta
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def _refuse_foreign_files(job: SampleJob, meta: dict[str, Any] | None) -> None:
    """Refuse to replace a file beside ``out`` that adm did not write (``overwrite`` replaces it).

    What adm wrote is decided by its sidecar, the record of a finished run: the sidecar itself
    (a JSON object with a run key), the grid it names (with the grid's sha256, so a picture put
    there since is not adm's) and the extra outputs it lists. The npz has its own, stricter check
    (``_finished``).
    """
    sidecar = sidecar_path(job.out)
    if sidecar.exists() and meta is None:
        raise UsageError(f"{sidecar} exists and was not written by adm: the run's JSON sidecar would replace it", RETRY)
    grid = grid_path(job.out)
    if job.grid_size and grid.exists() and not _grid_is_adms(grid, meta):
        raise UsageError(f"{grid} exists and was not written by adm: the run's PNG grid would replace it", RETRY)
    _refuse_foreign_extras(job, set((meta or {}).get("extra_outputs", {}).values()))


def _refuse_foreign_extras(job: SampleJob, listed: set[str]) -> None:
    for name, path in job.extra_outputs.items():
        if path.exists() and str(path) not in listed:
            raise UsageError(f"{path} exists and was not written by adm: the run's {name} would replace it", RETRY)


def _grid_is_adms(grid: Path, meta: dict[str, Any] | None) -> bool:
    recorded = (meta or {}).get("grid") or {}
    if recorded.get("file") != grid.name:
        return False
    return "sha256" not in recorded or recorded["sha256"] == _sha256(grid)


def written_grid(out: Path) -> Path | None:
    """The PNG grid beside ``out`` if adm's run wrote it (and it is unchanged), else None."""
    grid = grid_path(out)
    return grid if grid.is_file() and _grid_is_adms(grid, _read_sidecar(out)) else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _finished(job: SampleJob, store: ShardStore) -> bool:
    """Whether ``job.out`` already holds this job's samples; reuses a shorter run of the same command.

    An output made by a different command is refused (``overwrite`` replaces it), as are shards
    of one and files beside it that adm did not write. A complete output with fewer samples of
    the same command becomes the first shard, so growing ``-n`` samples only the new ones.
    """
    if job.overwrite:
        _remove_output(job)
        store.remove()
        return False
    meta = _read_sidecar(job.out)
    if not job.out.exists():
        _refuse_foreign_files(job, meta)
        return False
    if meta is None:
        raise UsageError(f"{job.out} exists and was not written by adm (no readable {sidecar_path(job.out).name})", RETRY)
    made, key = int(meta["num_samples"]), meta["key"]
    if not same_command(key, job.key()):
        raise UsageError(f"{job.out} holds samples of a different command ({describe_difference(key, job.key())})", RETRY)
    if made == job.num_samples:
        return True  # nothing will be written
    _refuse_foreign_files(job, meta)
    if made > job.num_samples:
        raise UsageError(f"{job.out} already holds {made} samples of this command, more than the {job.num_samples} asked for",
                         "ask for at least as many, " + RETRY)
    if job.extra_outputs:  # the extra arrays are not in the npz: sample them again
        raise UsageError(f"{job.out} holds {made} samples; growing it with --save-latents needs a fresh run", RETRY)
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
    job: SampleJob,
    producer: Producer,
    dist: Dist | None = None,
    *,
    on_progress: ProgressFn | None = None,
) -> JobResult:
    """Fill ``job`` with ``producer``'s batches (``adm.sampling.batches``), resumably.

    Rank 0 holds the output's lock for the whole run: a second run on the same ``out`` waits for
    the first (saying so), then finds its samples; one of another command is refused at once.
    """
    dist = dist or Dist()
    job.validate()
    store = ShardStore(job.out)
    with _sole_writer(job, store, producer.task, on_progress) if dist.is_main else contextlib.nullcontext():
        try:
            finished = _finished(job, store) if dist.is_main else None
            if dist.broadcast_object(finished):
                return JobResult(job.out, job.num_samples, job.num_samples, 0)
            if dist.is_main:
                store.open(job.key())
            dist.barrier()
            return _sample_missing(job, producer, store, dist, on_progress)
        except KeyboardInterrupt as err:
            raise _interrupted(err, job, store, dist) from None
        except BaseException:
            if dist.is_main and not store.done():  # no finished batch: leave nothing behind (a run.json alone)
                store.remove()
            raise


def _sole_writer(job: SampleJob, store: ShardStore, task: str, on_progress: ProgressFn | None):
    """The output's lock; while another process holds it, refuse a different command (its
    shards would be refused after the wait anyway) or say that this one waits."""

    def waiting() -> None:
        if not job.overwrite:
            store.check(job.key())
        report(on_progress, task, 0, job.num_samples, unit="img", message=f"waiting for another adm process that is "
               f"writing {job.out} (a run of this same command: its samples will be reused)")

    make_folder(job.out.parent, job.out)
    return exclusive(lock_path(job.out), waiting)


def _interrupted(err: KeyboardInterrupt, job: SampleJob, store: ShardStore, dist: Dist) -> Interrupted:
    """The interruption, saying truly what was kept: finished batches to resume from, or nothing
    (then the shard folder goes too)."""
    signum = signal_of(err)
    if not dist.is_main:
        return Interrupted(signum)
    done = store.done()
    if not done:
        store.remove()
        return Interrupted(signum, "nothing was written")
    kept = job.num_samples - len(store.missing(job.num_samples))
    batches = f"{len(done)} finished batch{'' if len(done) == 1 else 'es'}"
    return Interrupted(signum, f"{batches} ({kept} of {job.num_samples} samples) kept in {store.folder}",
                       "run the same command to continue")


def _sample_missing(job: SampleJob, producer: Producer, store: ShardStore, dist: Dist, on_progress) -> JobResult:
    missing = dist.broadcast_object(store.missing(job.num_samples) if dist.is_main else None)
    already = job.num_samples - len(missing)
    mine = [b for j, b in enumerate(_batches(missing, job.batch_size)) if j % dist.world_size == dist.rank]
    computed = 0
    report(on_progress, producer.task, already, job.num_samples, unit="img",
           message=f"resuming: {already} of {job.num_samples} samples already done" if already else None)
    for indices in mine:
        batch = producer(indices)
        store.write(indices[0], batch.images, batch.labels, batch.extra)
        computed += len(indices)
        report(on_progress, producer.task, min(job.num_samples, already + computed * dist.world_size), job.num_samples,
               unit="img")
    dist.barrier()
    if dist.is_main:
        _finish(job, store, producer)
    dist.barrier()
    return JobResult(job.out, job.num_samples, already, computed)


def sample_in_memory(job: SampleJob, producer: Producer, *, on_progress: ProgressFn | None = None
                     ) -> tuple[JobResult, np.ndarray, np.ndarray | None]:
    """All of ``job``'s samples as arrays, in one process: no shards, no npz (nothing to resume).

    Its ``extra_outputs`` are still written (atomically), since the caller asked for those files.
    """
    job.validate()
    if not job.overwrite:
        _refuse_foreign_extras(job, set())  # no sidecar records them: an existing file is not adm's
    images, labels, extra = [], [], {}
    for indices in _batches(list(range(job.num_samples)), job.batch_size):
        batch = producer(indices)
        images.append(batch.images)
        labels.append(batch.labels)
        for name, values in batch.extra.items():
            extra.setdefault(name, []).append(values)
        report(on_progress, producer.task, indices[-1] + 1, job.num_samples, unit="img")
    for name, path in job.extra_outputs.items():
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, arr_0=np.concatenate(extra[name]))
    all_labels = np.concatenate(labels) if labels[0] is not None else None
    return JobResult(None, job.num_samples, 0, job.num_samples), np.concatenate(images), all_labels


def _finish(job: SampleJob, store: ShardStore, producer: Producer) -> None:
    images, labels, extra = store.assemble(job.num_samples)
    arrays = {"arr_0": images} if labels is None else {"arr_0": images, "arr_1": labels}
    with atomic_path(job.out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    for name, path in job.extra_outputs.items():
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, arr_0=extra[name])
    shown = min(job.grid_size, len(images))
    grid_record = None  # no grid written: a PNG there stays the user's for every later run
    if shown:
        grid, columns = producer.grid(images[:shown], 0)
        save_grid(grid, grid_path(job.out), columns=columns)
        grid_record = {"file": grid_path(job.out).name, "count": shown, "order": "row-major",
                       "sha256": _sha256(grid_path(job.out))}  # how a later run knows the file is adm's
    meta = {
        "num_samples": job.num_samples,
        "shape": list(images.shape),
        "key": job.key(),
        **job.notes,
        "grid": grid_record,
        "grid_labels": labels[:shown].tolist() if labels is not None else None,
        **({"extra_outputs": {k: str(v) for k, v in job.extra_outputs.items()}} if job.extra_outputs else {}),
    }
    write_json_atomic(sidecar_path(job.out), meta)
    store.remove()
