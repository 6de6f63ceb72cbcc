"""FID, sFID, Inception Score and precision/recall by the protocol of OpenAI's evaluator.

* ``evaluate(samples, ref)`` → ``{"inception_score", "fid", "sfid", "precision", "recall",
  "num_samples", "num_ref"}``; ``make_reference(data, out)`` writes an ADM reference batch.
* ``adm.evaluation.stats``: the metrics as functions of features (no network, no files).
* ``adm.evaluation.inception``: torch-fidelity's TF-compatible Inception-v3 with the sFID hook.
"""

from adm.evaluation.evaluate import (
    DEFAULT_BATCH_SIZE,
    KEY_FID,
    KEY_INCEPTION_SCORE,
    KEY_NUM_REF,
    KEY_NUM_SAMPLES,
    KEY_PRECISION,
    KEY_RECALL,
    KEY_SFID,
    METRIC_KEYS,
    compute_statistics,
    default_reference,
    evaluate,
    inception_weights_path,
    make_reference,
)
from adm.evaluation.inception import InceptionFeatures, load_inception, spatial_features
from adm.evaluation.reference import Reference, Statistics, open_reference, write_reference
from adm.evaluation.stats import (
    Moments,
    frechet_distance,
    inception_score,
    manifold_radii,
    pairwise_sq_distances,
    precision_recall,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "KEY_FID",
    "KEY_INCEPTION_SCORE",
    "KEY_NUM_REF",
    "KEY_NUM_SAMPLES",
    "KEY_PRECISION",
    "KEY_RECALL",
    "KEY_SFID",
    "METRIC_KEYS",
    "InceptionFeatures",
    "Moments",
    "Reference",
    "Statistics",
    "compute_statistics",
    "default_reference",
    "evaluate",
    "frechet_distance",
    "inception_score",
    "inception_weights_path",
    "load_inception",
    "make_reference",
    "manifold_radii",
    "open_reference",
    "pairwise_sq_distances",
    "precision_recall",
    "spatial_features",
    "write_reference",
]
