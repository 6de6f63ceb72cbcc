"""Training runs: the rule that layers a preset, the run being continued and explicit values
(``adm.training.runs``), and the typed configs it validates into."""

from adm.spec.flags import float_list
from adm.training.config import ClassifierTrainConfig, TrainConfig, option_name
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
    "ResolvedRun",
    "RunRequest",
    "TrainConfig",
    "float_list",
    "option_name",
    "resolve_run",
    "start_run",
    "train",
    "train_classifier",
]
