"""The metrics ``adm evaluate`` can compute, as a registry: built-ins and plugins alike.

A metric is a ``MetricSpec``: a function of the sample images and an ``EvaluationRequest`` (the
reference, batch size, weights, device, ...) returning named numbers, the rows that present them,
and, for ``--metric auto``, which samples it is the natural choice for. Built in:

* ``inception``: OpenAI's evaluator protocol (IS, FID, sFID, precision, recall; ``evaluate``);
* ``digits``: the offline demo's judge (accuracy on the requested labels, digits-FD against the
  reference's images or else the real digits), the natural choice for 16x16 samples.

Other packages add metrics under the entry-point group ``adm.metrics`` (a ``MetricSpec``).

Samples of any channel count (``ImageCollection.channels``: a grayscale or N-channel model's
npz) reach every metric, which takes what it can read: ``inception`` RGB only (a one-line error
otherwise; ``gray_as_rgb`` shows grayscale images as RGB), ``digits`` grayscale or RGB (the
digits are grey), a plugin whatever it handles.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn, report
from adm.core.suggest import did_you_mean
from adm.data.images import ImageCollection
from adm.evaluation.evaluator import (
    KEY_FID,
    KEY_INCEPTION_SCORE,
    KEY_NUM_REF,
    KEY_NUM_SAMPLES,
    KEY_PRECISION,
    KEY_RECALL,
    KEY_SFID,
)

ENTRY_POINTS = "adm.metrics"
Row = tuple[str, str, str]  # (label, key of the result, format, e.g. "{:.4f}")


@dataclass(frozen=True)
class EvaluationRequest:
    """Everything a metric may need besides the samples; each metric reads what it uses."""

    ref: Path | None = None  # reference (inception: a batch, default from the cache; digits: images, default the real digits)
    batch_size: int = 64
    inception_weights: Path | None = None
    judge: Path | None = None  # digits judge weights (default: the shipped one)
    download: bool = False
    cache: bool = True
    dist: Dist | None = None
    on_progress: ProgressFn | None = None
    gray_as_rgb: bool = False  # inception: show grayscale images as RGB (the channel three times)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    compute: Callable[[ImageCollection, EvaluationRequest], dict[str, Any]]
    rows: tuple[Row, ...]
    description: str = ""
    natural_for: Callable[[ImageCollection], bool] | None = None  # what --metric auto picks it for
    distributed: bool = False  # runs on every torchrun rank (else once, on rank 0)

    def table_rows(self, result: dict[str, Any]) -> list[tuple[str, str]]:
        """(label, formatted value) of each row; a missing value is explained, not hidden."""
        return [(label, "n/a" if result.get(key) is None else fmt.format(result[key])) for label, key, fmt in self.rows]


def _inception(samples: ImageCollection, request: EvaluationRequest) -> dict[str, Any]:
    from adm.evaluation.evaluator import default_reference, evaluate, inception_images

    samples = inception_images(samples, request.gray_as_rgb, what="samples")  # before any download
    ref = request.ref
    if ref is None:
        name, ref = default_reference(samples, download=request.download, on_progress=request.on_progress)
        report(request.on_progress, "reference", 0, None, message=f"reference: {name} ({ref})")
    result = evaluate(samples, ref, batch_size=request.batch_size, inception_weights=request.inception_weights,
                      download=request.download, cache=request.cache, dist=request.dist, on_progress=request.on_progress,
                      gray_as_rgb=request.gray_as_rgb)
    return {**result, "ref": str(ref)}


def _digits(samples: ImageCollection, request: EvaluationRequest) -> dict[str, Any]:
    from adm.evaluation.digits_judge import evaluate_digits
    from adm.hub.download import ensure_artifact

    return evaluate_digits(samples.path, request.judge or ensure_artifact("digits-judge"), ref=request.ref,
                           on_progress=request.on_progress)


BUILTIN = {
    spec.name: spec
    for spec in (
        MetricSpec(
            "inception", _inception, distributed=True,
            description="OpenAI's evaluator protocol: IS, FID, sFID, precision, recall",
            rows=(("Inception Score", KEY_INCEPTION_SCORE, "{:.4f}"), ("FID", KEY_FID, "{:.4f}"),
                  ("sFID", KEY_SFID, "{:.4f}"), ("Precision", KEY_PRECISION, "{:.4f}"), ("Recall", KEY_RECALL, "{:.4f}"),
                  ("samples", KEY_NUM_SAMPLES, "{:d}"), ("reference images", KEY_NUM_REF, "{:d}")),
        ),
        MetricSpec(
            "digits", _digits, natural_for=lambda s: (s.height, s.width) == (16, 16),
            description="the digits demo's judge: accuracy on the requested labels, digits-FD (vs --ref, else the real digits)",
            rows=(("judge accuracy (vs requested labels)", "digits_accuracy", "{:.4f}"),
                  ("digits-FD", "digits_fd", "{:.4f}"), ("samples", "num_samples", "{:d}")),
        ),
    )
}


@cache
def available_metrics() -> dict[str, MetricSpec]:
    """Built-in metrics plus those installed packages register (entry points ``adm.metrics``)."""
    found: dict[str, MetricSpec] = dict(BUILTIN)
    for ep in entry_points(group=ENTRY_POINTS):
        if ep.name in found:
            continue
        try:
            spec = ep.load()
        except Exception as err:  # a broken plugin must not take the command down
            raise UsageError(f"metric plugin {ep.name!r} ({ep.value}) failed to load: {err}") from None
        if not isinstance(spec, MetricSpec):
            raise UsageError(f"metric plugin {ep.name!r} is not an adm.evaluation.metrics.MetricSpec")
        found[ep.name] = spec
    return found


def choose_metric(name: str, samples: ImageCollection) -> MetricSpec:
    """The metric called ``name``; ``auto`` is the first whose ``natural_for`` the samples, else inception."""
    metrics = available_metrics()
    if name == "auto":
        return next((m for m in metrics.values() if m.natural_for and m.natural_for(samples)), metrics["inception"])
    if name not in metrics:
        raise UsageError(f"unknown metric {name!r}", did_you_mean(name, ["auto", *metrics], "adm evaluate --help"))
    return metrics[name]


@dataclass(frozen=True)
class Evaluation:
    metric: MetricSpec
    result: dict[str, Any] = field(default_factory=dict)


def evaluate_samples(samples: ImageCollection, metric: str = "auto", request: EvaluationRequest | None = None) -> Evaluation:
    """Compute ``metric`` (or the natural one) on ``samples``."""
    spec = choose_metric(metric, samples)
    request = request or EvaluationRequest()
    if not spec.distributed and request.dist is not None and not request.dist.is_main:
        return Evaluation(spec)
    return Evaluation(spec, spec.compute(samples, request))
