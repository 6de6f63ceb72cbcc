"""Scoring samples: the metric registry (``inception``: OpenAI's evaluator protocol; ``digits``: the
demo's judge; plugins) and reference batches for your own data.

The protocol's numbers are plain constants (``adm evaluate`` shows them as defaults when ``adm``
starts); the rest (torch) is imported on first use.
"""

from adm.evaluation.protocol import DEFAULT_BATCH_SIZE, REF_MAX_IMAGES

_EVALUATOR = ("make_reference", "open_samples")
_METRICS = (
    "Evaluation", "EvaluationRequest", "MetricSpec", "available_metrics", "choose_metric", "evaluate_samples",
)

__all__ = ["DEFAULT_BATCH_SIZE", "REF_MAX_IMAGES", *_EVALUATOR, *_METRICS]


def __getattr__(name: str):
    if name in _EVALUATOR:
        from adm.evaluation import evaluator

        return getattr(evaluator, name)
    if name in _METRICS:
        from adm.evaluation import metrics

        return getattr(metrics, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
