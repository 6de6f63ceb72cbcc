"""Training diffusion models, upsamplers and noisy classifiers (``adm train``, ``adm train-classifier``).

>>> import adm
>>> adm.train("tiny", data="digits.npz", run_dir="runs/tiny", iterations=200)     # again: continues the run
>>> adm.train_classifier("tiny", data="digits.npz", run_dir="runs/tiny-cls")

``adm.training.runs`` holds the rule that layers a preset, the run being continued and explicit
values (the CLI uses it too); ``fit_diffusion`` / ``fit_classifier`` run a resolved config. A
run dir holds ``config.json`` and checkpoints in the original's names; ``latest_weights`` finds
the weights to sample with. See docs/training.md.
"""

from adm.training.classifier import fit_classifier
from adm.training.config import ClassifierTrainConfig, CommonTrainConfig, TrainConfig, make_config
from adm.training.diffusion import fit_diffusion
from adm.training.engine import TrainResult
from adm.training.rundir import latest_weights, read_run_config, run_flags
from adm.training.runs import (
    ResolvedRun,
    RunRequest,
    resolve_run,
    start_run,
    train,
    train_classifier,
)

__all__ = [
    "ClassifierTrainConfig",
    "CommonTrainConfig",
    "ResolvedRun",
    "RunRequest",
    "TrainConfig",
    "TrainResult",
    "latest_weights",
    "make_config",
    "read_run_config",
    "resolve_run",
    "run_flags",
    "start_run",
    "train",
    "fit_classifier",
    "fit_diffusion",
    "train_classifier",
]
