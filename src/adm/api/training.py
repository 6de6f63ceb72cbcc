"""Training runs: the rule that layers a preset, the run being continued and explicit values
(``adm.training.runs``), and the typed configs it validates into.

The configs are plain settings (``adm train`` builds its options from them, without torch); the
runs are imported on first use.
"""

from adm.spec.flags import float_list
from adm.training.config import ClassifierTrainConfig, TrainConfig, option_name

_RUNS = ("ResolvedRun", "RunRequest", "resolve_run", "start_run", "train", "train_classifier")  # on first use

__all__ = ["ClassifierTrainConfig", "TrainConfig", "float_list", "option_name", *_RUNS]


def __getattr__(name: str):
    if name in _RUNS:
        from adm.training import runs

        value = getattr(runs, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
