"""Training runs: the rule that layers a preset, the run being continued and explicit values
(``adm.training.runs``), the typed configs it validates into, and the training tasks a run's
kind names (``adm.training.tasks``: ``train_task(kind, ...)`` trains a plugin's too).

The configs are plain settings (``adm train`` builds its options from them, without torch); the
runs are imported on first use.
"""

from adm.spec.flags import float_list
from adm.training.config import ClassifierTrainConfig, TrainConfig, option_name
from adm.training.tasks import TaskSpec, find_task, get_task, task_kinds

_RUNS = ("ResolvedRun", "RunRequest", "resolve_run", "start_run", "train", "train_classifier", "train_task")  # on first use

__all__ = ["ClassifierTrainConfig", "TaskSpec", "TrainConfig", "find_task", "float_list", "get_task", "option_name",
           "task_kinds", *_RUNS]


def __getattr__(name: str):
    if name in _RUNS:
        from adm.training import runs

        value = getattr(runs, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
