"""Training runs: the rule that layers a preset, the run being continued and explicit values
(``adm.training.runs``), the typed configs it validates into, and the training tasks a run's
kind names (``adm.training.tasks``: ``train_task(kind, ...)`` trains a plugin's too).

The configs are plain settings (``adm train`` builds its options from them, without torch); the
runs are imported on first use. Training through this module is watched: ``train``,
``train_classifier``, ``train_task`` and ``start_run`` install the monitors of ``adm.api.monitors``
(``--sample-every``, ``--eval-every``) around the run (``adm.training.monitor.watching``).
"""

import functools

from adm.spec.flags import float_list
from adm.training.config import ClassifierTrainConfig, TrainConfig, option_name
from adm.training.tasks import TaskSpec, find_task, get_task, task_kinds

_RUNS = ("ResolvedRun", "RunRequest", "resolve_run", "start_run", "train", "train_classifier", "train_task")  # on first use

__all__ = ["ClassifierTrainConfig", "TaskSpec", "TrainConfig", "find_task", "float_list", "get_task", "option_name",
           "task_kinds", *_RUNS]


_WATCHED = ("start_run", "train", "train_classifier", "train_task")  # these train: the monitors go around them


def _watched(run):
    """``run`` with the monitors the run's config asks for (sample grids, evaluations) installed."""

    @functools.wraps(run)
    def watched(*args, **kwargs):
        from adm.api.monitors import run_monitors
        from adm.training.monitor import watching

        with watching(run_monitors):
            return run(*args, **kwargs)

    return watched


def __getattr__(name: str):
    if name in _RUNS:
        from adm.training import runs

        value = getattr(runs, name)
        value = _watched(value) if name in _WATCHED else value
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
