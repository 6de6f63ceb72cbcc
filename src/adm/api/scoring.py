"""Scoring samples: the metric registry (``inception``: OpenAI's evaluator protocol; ``digits``: the
demo's judge; plugins) and reference batches for your own data."""

from adm.evaluation.evaluate import DEFAULT_BATCH_SIZE, make_reference, open_samples
from adm.evaluation.metrics import (
    Evaluation,
    EvaluationRequest,
    MetricSpec,
    available_metrics,
    choose_metric,
    evaluate_samples,
)
from adm.evaluation.reference import REF_MAX_IMAGES

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "REF_MAX_IMAGES",
    "Evaluation",
    "EvaluationRequest",
    "MetricSpec",
    "available_metrics",
    "choose_metric",
    "evaluate_samples",
    "make_reference",
    "open_samples",
]
