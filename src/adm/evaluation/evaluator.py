"""``evaluate``: samples against a reference by the protocol of OpenAI's evaluator; ``make_reference``.

>>> from adm.evaluation import evaluate
>>> evaluate("samples.npz", "VIRTUAL_imagenet256_labeled.npz")
{'inception_score': ..., 'fid': ..., 'sfid': ..., 'precision': ..., 'recall': ...,
 'num_samples': 50000, 'num_ref': 10000}

Under torchrun every rank calls the same function with its ``Dist``; each computes Inception
features for its share of the images, rank 0 computes the metrics and every rank returns them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from adm.core.distributed import Dist, pick_device
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn, report
from adm.data.images import ImageCollection, open_images
from adm.evaluation import cache as feature_cache
from adm.evaluation.features import Features, extract_all
from adm.evaluation.inception import (
    POOL_DIM,
    SPATIAL_DIM,
    InceptionFeatures,
    exact_fp32,
    load_inception,
)
from adm.evaluation.protocol import DEFAULT_BATCH_SIZE, REF_MAX_IMAGES
from adm.evaluation.reference import (
    Reference,
    Statistics,
    open_reference,
    reference_name,
    write_reference,
)
from adm.evaluation.stats import (
    PR_NEIGHBOURHOOD,
    covariance_warning,
    frechet_distance,
    inception_score,
    precision_recall,
)

KEY_INCEPTION_SCORE = "inception_score"
KEY_FID = "fid"
KEY_SFID = "sfid"
KEY_PRECISION = "precision"
KEY_RECALL = "recall"
KEY_NUM_SAMPLES = "num_samples"
KEY_NUM_REF = "num_ref"
METRIC_KEYS = (
    KEY_INCEPTION_SCORE,
    KEY_FID,
    KEY_SFID,
    KEY_PRECISION,
    KEY_RECALL,
    KEY_NUM_SAMPLES,
    KEY_NUM_REF,
)


# ------------------------------------------------------------------------------ inputs


def inception_weights_path(
    weights: str | os.PathLike | None = None,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    registry=None,
    on_progress: ProgressFn | None = None,
) -> Path:
    """``weights`` if given, else the cached ``inception`` artifact (MissingFileError if absent)."""
    if weights is not None:
        return Path(weights).expanduser()
    from adm.hub.download import ensure_artifact

    return ensure_artifact("inception", download=download, cache_dir=cache_dir, registry=registry,
                           on_progress=on_progress)


def default_reference(
    samples: ImageCollection,
    *,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    registry=None,
    on_progress: ProgressFn | None = None,
) -> tuple[str, Path]:
    """``(artifact name, cached path)`` of the ImageNet reference batch for the samples' size."""
    from adm.hub.download import ensure_artifact

    name = reference_name(samples.height, samples.width)
    return name, ensure_artifact(name, download=download, cache_dir=cache_dir, registry=registry,
                                 on_progress=on_progress)


def open_samples(
    samples: str | os.PathLike | ImageCollection, *, minimum: int = 2, name: str = "samples"
) -> ImageCollection:
    """The sample images (npz or folder), with at least ``minimum`` of them."""
    images = samples if isinstance(samples, ImageCollection) else open_images(samples, name=name)
    if images.count < minimum:
        raise UsageError(
            f"{images.path} holds {images.count} image(s); at least {minimum} are needed"
        )
    return images


INCEPTION_METRICS = "the Inception metrics (FID, sFID, IS, precision, recall)"


def inception_images(images: ImageCollection, gray_as_rgb: bool = False, *, what: str = "") -> ImageCollection:
    """The images as Inception reads them: 8-bit RGB. Other channel counts are refused with what
    to do; with ``gray_as_rgb`` a grayscale channel is shown three times (R = G = B), as FID of
    grayscale data is commonly computed (and as a folder of grayscale files is read anyway)."""
    if images.channels == 3:
        return images
    where = f"{what} {images.path}" if what else str(images.path)
    if images.channels == 1 and gray_as_rgb:
        return images.as_rgb()
    hint = ("pass --gray-as-rgb (gray_as_rgb=True) to show each grayscale image as RGB, the channel three times, "
            "or use a metric for any channel count (--metric NAME)" if images.channels == 1
            else "use a metric for any channel count (--metric NAME, e.g. a plugin's under adm.metrics)")
    raise UsageError(f"{where} holds {images.channels}-channel images; {INCEPTION_METRICS} read RGB images", hint)


def _dist(dist: Dist | None, device: str | torch.device | None) -> Dist:
    if dist is not None:
        return dist
    return Dist(device=pick_device(str(device) if device is not None else None))


# ------------------------------------------------------------------------------ statistics


def _statistics(features: Features) -> Statistics:
    return Statistics(
        features.pool_moments.mean(),
        features.pool_moments.cov(),
        features.spatial_moments.mean(),
        features.spatial_moments.cov(),
    )


def compute_statistics(
    images: ImageCollection,
    model: InceptionFeatures,
    *,
    dist: Dist | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    on_progress: ProgressFn | None = None,
    task: str = "statistics",
) -> Statistics:
    """mu/sigma (pool3) and mu_s/sigma_s (sFID features) over every image of ``images``.

    Runs on ``dist.device``, or without ``dist`` on the device of ``model``.
    """
    dist = _dist(dist, next(model.parameters()).device)
    with exact_fp32():
        features = extract_all(
            images,
            model,
            dist,
            batch_size=batch_size,
            keep_pool=False,
            on_progress=on_progress,
            task=task,
        )
    return _statistics(features)


@dataclass
class _ReferenceSide:
    stats: Statistics | None  # on rank 0
    pool: np.ndarray | None  # on rank 0; None when the reference has no images
    stats_from: int | None = None  # images the statistics were computed from; None: stored ones


def _reference_side(
    reference: Reference,
    model: InceptionFeatures,
    weights: Path,
    dist: Dist,
    *,
    batch_size: int,
    cache: bool,
    cache_dir,
    on_progress: ProgressFn | None,
) -> _ReferenceSide:
    need_stats = reference.stats is None
    if reference.images is None:
        return _ReferenceSide(reference.stats, None)
    entry = (
        feature_cache.cache_file(reference.path, reference.images, weights, cache_dir)
        if cache
        else None
    )
    hit = None
    if entry is not None and dist.is_main:
        hit = _from_cache(feature_cache.load(entry), reference.num_images, need_stats)
    if dist.broadcast_object(hit is not None):
        report(
            on_progress,
            "reference",
            reference.num_images,
            reference.num_images,
            unit="img",
            message=f"reference features from the cache ({entry})",
        )
        if hit is None:  # not rank 0: only rank 0 computes the metrics
            return _ReferenceSide(None, None)
        pool, stats = hit
        return _ReferenceSide(stats if need_stats else reference.stats, pool, len(pool) if need_stats else None)
    features = extract_all(
        reference.images,
        model,
        dist,
        batch_size=batch_size,
        keep_pool=True,
        moments=need_stats,
        on_progress=on_progress,
        task="reference",
    )
    stats = _statistics(features) if need_stats else reference.stats
    if entry is not None and dist.is_main:
        arrays = {"pool": features.pool}
        if need_stats:
            arrays.update(stats.as_dict())
        note = feature_cache.save(entry, arrays)
        if note:
            report(
                on_progress, "reference", features.count, features.count, unit="img", message=note
            )
    return _ReferenceSide(stats, features.pool, features.count if need_stats else None)


def _from_cache(arrays, count: int, need_stats: bool):
    if arrays is None:
        return None
    pool = arrays.get("pool")
    if pool is None or pool.shape != (count, POOL_DIM):
        return None
    if not need_stats:
        return pool, None
    try:
        stats = Statistics(arrays["mu"], arrays["sigma"], arrays["mu_s"], arrays["sigma_s"])
    except KeyError:
        return None
    if stats.sigma.shape != (POOL_DIM, POOL_DIM) or stats.sigma_s.shape != (
        SPATIAL_DIM,
        SPATIAL_DIM,
    ):
        return None
    return pool, stats


# ------------------------------------------------------------------------------ the pipeline


def evaluate(
    samples: str | os.PathLike | ImageCollection,
    ref: str | os.PathLike | None = None,
    *,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    inception_weights: str | os.PathLike | None = None,
    download: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    registry=None,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    gray_as_rgb: bool = False,
) -> dict[str, float | int | None]:
    """Inception Score, FID, sFID, precision and recall of ``samples`` against ``ref``.

    ``samples``: an npz (``arr_0`` uint8 NHWC) or a folder of images. ``ref``: an ADM reference
    batch (stored ``mu``/``sigma``/``mu_s``/``sigma_s`` are used for FID/sFID; its ``arr_0`` images
    for precision/recall), a plain npz of images or a folder; ``None`` picks OpenAI's ImageNet
    reference batch for the samples' resolution from the adm cache (``download`` fetches it, and
    the Inception weights). ``inception_weights`` overrides the cached ``inception`` artifact.
    Reference features are cached below the adm cache root unless ``cache`` is false. Images
    must be RGB (``inception_images``); ``gray_as_rgb`` shows grayscale ones as RGB.

    Returns the keys of ``METRIC_KEYS``; precision and recall are ``None`` when the reference has
    no images (or either side has fewer than 4).
    """
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    dist = _dist(dist, device)
    sample_images = inception_images(open_samples(samples), gray_as_rgb, what="samples")
    if ref is None:
        _, ref = default_reference(
            sample_images, download=download, cache_dir=cache_dir, registry=registry, on_progress=on_progress
        )
    reference = open_reference(ref)
    if reference.images is not None:
        reference = replace(reference, images=inception_images(reference.images, gray_as_rgb, what="reference"))
        got, want = (
            (sample_images.height, sample_images.width),
            (reference.images.height, reference.images.width),
        )
        if got != want:
            raise UsageError(
                f"the samples are {got[1]}x{got[0]} but the reference images are {want[1]}x{want[0]}",
                "evaluate against a reference of the samples' resolution",
            )
    if reference.stats is None and reference.num_images < 2:
        raise UsageError(
            f"reference {reference.path} holds {reference.num_images} image(s); at least 2 are needed"
        )
    weights = inception_weights_path(
        inception_weights, download=download, cache_dir=cache_dir, registry=registry, on_progress=on_progress
    )
    model = load_inception(weights, dist.device)

    with exact_fp32():
        ref_side = _reference_side(
            reference,
            model,
            weights,
            dist,
            batch_size=batch_size,
            cache=cache,
            cache_dir=cache_dir,
            on_progress=on_progress,
        )
        features = extract_all(
            sample_images,
            model,
            dist,
            batch_size=batch_size,
            keep_pool=True,
            keep_logits=True,
            on_progress=on_progress,
            task="samples",
        )
        result = None
        if dist.is_main:
            result = _metrics(features, ref_side, dist.device, on_progress)
    return dist.broadcast_object(result)


def _covariance_warnings(features: Features, ref: _ReferenceSide) -> list[str]:
    """FID / sFID computed from covariances of no more vectors than features (either side)."""
    counts = {"samples": features.count}
    if ref.stats_from is not None:
        counts["reference images"] = ref.stats_from
    warnings = []
    for whose, count in counts.items():
        names = [name for name, dim in (("FID", POOL_DIM), ("sFID", SPATIAL_DIM)) if count <= dim]
        if names:
            warnings.append(covariance_warning(" and ".join(names), count, POOL_DIM, whose))
    return warnings


def _metrics(features: Features, ref: _ReferenceSide, device: torch.device, on_progress) -> dict:
    """The five metrics on rank 0, reporting one step per Fréchet distance and for P/R."""
    stats = _statistics(features)
    for warning in _covariance_warnings(features, ref):
        report(on_progress, "metrics", 0, 3, unit="step", message=f"warning: {warning}")
    report(on_progress, "metrics", 0, 3, unit="step")
    result: dict[str, float | int | None] = {KEY_INCEPTION_SCORE: inception_score(features.logits)}
    result[KEY_FID] = frechet_distance(stats.mu, stats.sigma, ref.stats.mu, ref.stats.sigma)
    report(on_progress, "metrics", 1, 3, unit="step")
    result[KEY_SFID] = frechet_distance(
        stats.mu_s, stats.sigma_s, ref.stats.mu_s, ref.stats.sigma_s
    )
    report(on_progress, "metrics", 2, 3, unit="step")
    result[KEY_PRECISION] = result[KEY_RECALL] = None
    if ref.pool is not None and min(len(ref.pool), features.count) > PR_NEIGHBOURHOOD:
        result[KEY_PRECISION], result[KEY_RECALL] = precision_recall(
            ref.pool, features.pool, device=device
        )
    result[KEY_NUM_SAMPLES] = features.count
    result[KEY_NUM_REF] = 0 if ref.pool is None else len(ref.pool)
    report(on_progress, "metrics", 3, 3, unit="step")
    return result


def make_reference(
    data: str | os.PathLike | ImageCollection,
    output: str | os.PathLike,
    *,
    max_images: int = REF_MAX_IMAGES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str | torch.device | None = None,
    inception_weights: str | os.PathLike | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    registry=None,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    gray_as_rgb: bool = False,
) -> Path:
    """Write an ADM reference batch of ``data``: statistics over ALL its images, the first
    ``max_images`` of them as ``arr_0`` (for precision/recall). Written atomically by rank 0."""
    if max_images < 0:
        raise UsageError(f"--max-images must be at least 0, got {max_images}")
    if batch_size < 1:
        raise UsageError(f"batch size must be at least 1, got {batch_size}")
    dist = _dist(dist, device)
    images = inception_images(open_samples(data, name="images"), gray_as_rgb)
    output = Path(output).expanduser()
    if output.suffix != ".npz":
        raise UsageError(f"the reference batch must be an .npz file, got {output}")
    if output.resolve() == images.path.resolve():
        raise UsageError(f"{output} is the input; write the reference batch to another file")
    weights = inception_weights_path(
        inception_weights, download=download, cache_dir=cache_dir, registry=registry, on_progress=on_progress
    )
    model = load_inception(weights, dist.device)
    stats = compute_statistics(
        images, model, dist=dist, batch_size=batch_size, on_progress=on_progress, task="images"
    )
    if dist.is_main:
        keep = min(max_images, images.count)
        batches = images.batches(batch_size, 0, keep)
        try:
            write_reference(
                output, stats, batches, num_images=keep, height=images.height, width=images.width
            )
        finally:
            batches.close()
    dist.barrier()
    return output
