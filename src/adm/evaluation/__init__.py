"""FID, sFID, Inception Score and precision/recall by the protocol of OpenAI's evaluator.

* ``evaluate(samples, ref)`` → ``{"inception_score", "fid", "sfid", "precision", "recall",
  "num_samples", "num_ref"}``; ``make_reference(data, out)`` writes an ADM reference batch.
* ``adm.evaluation.stats``: the metrics as functions of features (no network, no files).
* ``adm.evaluation.inception``: torch-fidelity's TF-compatible Inception-v3 with the sFID hook.

The names below are imported on first use: ``adm.evaluation.protocol`` (the defaults
``adm evaluate`` shows) loads without torch, so ``adm --help`` starts at once.
"""

from __future__ import annotations

from adm.core.lazy import lazy_exports

_SUBMODULE = {  # name -> the submodule that defines it
    "DEFAULT_BATCH_SIZE": "protocol",
    "KEY_FID": "evaluator",
    "KEY_INCEPTION_SCORE": "evaluator",
    "KEY_NUM_REF": "evaluator",
    "KEY_NUM_SAMPLES": "evaluator",
    "KEY_PRECISION": "evaluator",
    "KEY_RECALL": "evaluator",
    "KEY_SFID": "evaluator",
    "METRIC_KEYS": "evaluator",
    "compute_statistics": "evaluator",
    "default_reference": "evaluator",
    "evaluate": "evaluator",
    "inception_weights_path": "evaluator",
    "make_reference": "evaluator",
    "InceptionFeatures": "inception",
    "load_inception": "inception",
    "spatial_features": "inception",
    "Reference": "reference",
    "Statistics": "reference",
    "open_reference": "reference",
    "write_reference": "reference",
    "Moments": "stats",
    "frechet_distance": "stats",
    "inception_score": "stats",
    "manifold_radii": "stats",
    "pairwise_sq_distances": "stats",
    "precision_recall": "stats",
}

__all__ = sorted(_SUBMODULE)
__getattr__, __dir__ = lazy_exports(__name__, _SUBMODULE)
