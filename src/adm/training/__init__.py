"""Training diffusion models, upsamplers and noisy classifiers (``adm train``, ``adm train-classifier``).

>>> from adm.training import TrainConfig, train_diffusion, get_training_preset
>>> preset = get_training_preset("tiny", "diffusion")
>>> config = TrainConfig(data="images/", **preset.train)
>>> result = train_diffusion(config, preset.network_flags(), "runs/tiny")

A run dir holds ``config.json`` and checkpoints in the original's names; ``latest_weights`` finds
the weights to sample with. See docs/training.md.
"""

from adm.training.classifier import train_classifier
from adm.training.config import ClassifierTrainConfig, CommonTrainConfig, TrainConfig, make_config
from adm.training.engine import TrainResult
from adm.training.loop import train_diffusion
from adm.training.presets import TrainPreset, get_training_preset, training_presets
from adm.training.rundir import latest_weights, read_run_config, run_flags

__all__ = [
    "ClassifierTrainConfig",
    "CommonTrainConfig",
    "TrainConfig",
    "TrainPreset",
    "TrainResult",
    "get_training_preset",
    "latest_weights",
    "make_config",
    "read_run_config",
    "run_flags",
    "train_classifier",
    "train_diffusion",
    "training_presets",
]
