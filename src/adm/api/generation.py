"""``adm.sample`` and ``adm.upsample``: from a preset (or flags, or a training run) to images.

Unset options take the preset's defaults; the networks are loaded and the sampler planned once
(``adm.api.setup``), then the sharded, resumable sampling job runs. The CLI calls exactly these.

>>> import adm
>>> out = adm.sample("digits", num_samples=20, sampler="dpm++2m-sde", steps=20)
>>> out.images.shape, out.labels          # (20, 16, 16, 3) uint8, int64 labels

A model of C channels (``in_channels``, e.g. trained on grayscale data) makes uint8
``[N, H, W, C]`` images; the PNG grid shows them as a PNG of that many channels would
(``adm.data.grid``).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from adm.api.options import RunOptions, SamplingOptions, gather, refuse_leftovers
from adm.api.setup import given_or, resolve
from adm.api.sources import ModelSource, content_fingerprint
from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn, report
from adm.data.grid import grid_note
from adm.data.images import for_channels, npz_labels, open_images
from adm.presets import Registry, default_registry
from adm.sampling.batches import SampleProducer, UpsampleProducer
from adm.sampling.job import (
    JobResult,
    SampleJob,
    grid_path,
    run_sample_job,
    sample_in_memory,
    written_grid,
)
from adm.sampling.seeds import parse_classes
from adm.sampling.shards import ShardStore


@dataclass(frozen=True)
class Samples:
    """What a sampling run produced. ``images``/``labels`` are filled when no ``out`` file was asked
    for (the run went to a temporary file); otherwise ``load()`` reads them from ``path``."""

    path: Path | None  # None when the run was in memory (no ``out``)
    result: JobResult
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    upsampled: Samples | None = None  # the cascade's second stage (sample(..., then_upsample=...))

    @property
    def grid(self) -> Path | None:
        """The PNG grid this run wrote beside ``path`` (None in memory, with ``grid=0``, or if replaced)."""
        return None if self.path is None else written_grid(self.path)

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.images is not None:
            return self.images, self.labels
        with np.load(self.path, allow_pickle=False) as data:
            return data["arr_0"], (data["arr_1"] if "arr_1" in data.files else None)


def parts_folder(out: str | Path) -> Path:
    """Where a run writing ``out`` keeps its finished batches (what an interrupted run resumes from)."""
    return ShardStore(Path(out)).folder


__all__ = ["Samples", "grid_path", "parts_folder", "sample", "upsample"]


def columns(classes, num_classes: int) -> int | None:
    """One column per class when classes are cycled (a class per column reads best)."""
    if isinstance(classes, list) and 1 < len(classes) <= 20:
        return len(classes)
    if classes == "balanced" and num_classes <= 20:
        return num_classes
    return None


def run_job(job: SampleJob, producer, dist: Dist | None, on_progress) -> Samples:
    """To ``job.out`` (sharded, resumable, across torchrun ranks), or in memory when it is None."""
    note = grid_note(producer.nets.image_shape[0]) if job.out is not None and job.grid_size else None
    if note is not None:
        report(on_progress, producer.task, 0, job.num_samples, unit="img", message=f"note: {note}")
    if job.out is None:
        if dist is not None and dist.world_size > 1:
            raise UsageError("under torchrun, samples are written to a file", "pass out= (--out)")
        result, images, labels = sample_in_memory(job, producer, on_progress=on_progress)
        return Samples(None, result, images, labels)
    result = run_sample_job(job, producer, dist or Dist(device=producer.nets.device), on_progress=on_progress)
    return Samples(job.out, result)


def sample(
    preset: str | None = None,
    *,
    source: ModelSource | None = None,
    classes: str | int | list[int] | None = None,
    then_upsample: str | None = None,
    sampling: SamplingOptions | None = None,
    run: RunOptions | None = None,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> Samples:
    """Sample images; with ``out`` they are written (resumably) to that npz, else returned in memory.

    ``options`` are fields of ``SamplingOptions`` (sampler, steps, scale, ...) and ``RunOptions``
    (num_samples, batch_size, seed, out, ...), as keywords or as the objects themselves. Unset,
    they take the preset's defaults, else 16 samples with uniformly drawn labels, unguided, with
    the original's ancestral sampler over every step of the model's chain. ``classes``: "random",
    "balanced", a comma list or a list of ids. ``then_upsample`` names an upsampler preset to run
    on the samples afterwards (the cascade); its result is ``.upsampled``.
    """
    sampling = gather(sampling, SamplingOptions, options)
    run = gather(run, RunOptions, options)
    refuse_leftovers(options, "sample", SamplingOptions, RunOptions)
    registry = registry or default_registry()
    source = source or ModelSource(preset=preset)
    setup = resolve(source, sampling, registry, upsampler=False, device=run.device, download=run.download, dist=dist,
                    cascade=then_upsample, on_progress=on_progress)
    flags = setup.loaded.flags
    defaults = setup.preset.sampling if setup.preset else None
    num_samples = given_or(run.num_samples, defaults.num_samples if defaults else 16)
    classes = given_or(classes, defaults.classes if defaults else "random")
    if setup.plan.needs_labels(flags.class_cond):
        classes = parse_classes(classes, setup.num_classes)
    if classes == "null" and setup.plan.settings.uses("null_label"):
        setup.warnings += ("with --classes null, classifier-free guidance mixes the unconditional prediction with "
                           "itself: --cfg-scale changes nothing",)
    setup.warn(on_progress, num_samples)

    def to(out: Path | None) -> Samples:
        job = SampleJob(
            out=out, num_samples=num_samples, batch_size=setup.batch_size(run.batch_size), seed=run.seed,
            plan=setup.plan, classes=classes, grid_size=run.grid,
            identity=setup.identity(), notes=setup.notes(), overwrite=run.overwrite,
        )
        producer = SampleProducer(setup.networks(), setup.plan, run.seed, classes, columns(classes, setup.num_classes))
        return run_job(job, producer, dist, on_progress)

    if then_upsample is None:
        return to(run.out)
    # The cascade: the upsampler reads the base samples from their npz (a temporary one in memory).
    with tempfile.TemporaryDirectory(prefix="adm-") as tmp:
        out = Path(run.out) if run.out is not None else Path(tmp) / "samples.npz"
        base = to(out)
        up = upsample(
            then_upsample, base_samples=out, sampling=SamplingOptions(precision=sampling.precision), dist=dist,
            run=run.model_copy(update={"num_samples": None, "batch_size": None,
                                       "out": out.with_name(out.stem + "-up.npz") if run.out is not None else None}),
            on_progress=on_progress, registry=registry,
        )
        if run.out is None:
            base = Samples(None, base.result, *base.load())
    return replace(base, upsampled=up)


def upsample(
    preset: str | None = None,
    *,
    base_samples: str | Path,
    source: ModelSource | None = None,
    sampling: SamplingOptions | None = None,
    run: RunOptions | None = None,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    registry: Registry | None = None,
    **options: Any,
) -> Samples:
    """Upsample ``base_samples`` (npz with labels, or a folder of PNGs) with an upsampler (ADM-U).

    ``options`` as for ``sample``; upsamplers are not guided (``scale`` is 0).
    """
    sampling = gather(sampling, SamplingOptions, options)
    run = gather(run, RunOptions, options)
    refuse_leftovers(options, "upsample", SamplingOptions, RunOptions)
    if sampling.scale or sampling.cfg_scale or sampling.autoguidance or sampling.guidance:
        raise UsageError("upsamplers are not guided", "drop the guidance scales")
    source = source or ModelSource(preset=preset)
    base = open_images(base_samples, name="base samples")
    labels = npz_labels(base_samples)
    setup = resolve(source, sampling.model_copy(update={"scale": 0.0, "guidance_interval": None, "cfg_scale": 0.0,
                                                        "autoguidance": 0.0}),
                    registry or default_registry(), upsampler=True, device=run.device, download=run.download,
                    dist=dist, on_progress=on_progress)
    base = for_channels(base, setup.loaded.flags.in_channels, "base samples")
    total = given_or(run.num_samples, base.count)
    setup.warn(on_progress, total)

    job = SampleJob(
        out=run.out, num_samples=total, batch_size=setup.batch_size(run.batch_size), overwrite=run.overwrite,
        seed=run.seed, plan=setup.plan, grid_size=run.grid, notes=setup.notes(),
        identity={**setup.identity(), "base": content_fingerprint(base_samples), "base_count": base.count},
    )
    producer = UpsampleProducer(setup.networks(), setup.plan, run.seed, base, labels, total)
    return run_job(job, producer, dist, on_progress)
