"""Training diffusion models, upsamplers and noisy classifiers (``adm train``, ``adm train-classifier``).

>>> import adm
>>> adm.train("tiny", data="digits.npz", run_dir="runs/tiny", iterations=200)     # again: continues the run
>>> adm.train_classifier("tiny", data="digits.npz", run_dir="runs/tiny-cls")

``adm.training.runs`` holds the rule that layers a preset, the run being continued and explicit
values (the CLI uses it too); ``fit_diffusion`` / ``fit_classifier`` run a resolved config.
``adm.training.tasks`` is the registry of training tasks (a run dir's ``kind``): the built-in
diffusion and classifier tasks and those packages add (entry points ``adm.training_tasks``),
trained with ``train_task(kind, ...)``. A run dir holds ``config.json`` and checkpoints in the
original's names; ``latest_weights`` finds the weights to sample with. See docs/training.md.

The names below are imported on first use: ``adm.training.config`` (the settings ``adm train``
builds its options from) loads without torch, so ``adm --help`` starts at once.
"""

from __future__ import annotations

from adm.core.lazy import lazy_exports

_SUBMODULE = {  # name -> the submodule that defines it
    "ClassifierTrainConfig": "config",
    "CommonTrainConfig": "config",
    "TrainConfig": "config",
    "make_config": "config",
    "fit_classifier": "classifier",
    "fit_diffusion": "diffusion",
    "TrainResult": "engine",
    "latest_weights": "rundir",
    "read_run_config": "rundir",
    "run_flags": "rundir",
    "ResolvedRun": "runs",
    "RunRequest": "runs",
    "resolve_run": "runs",
    "start_run": "runs",
    "train": "runs",
    "train_classifier": "runs",
    "train_task": "runs",
    "TaskSpec": "tasks",
    "get_task": "tasks",
    "task_kinds": "tasks",
}

__all__ = sorted(_SUBMODULE)
__getattr__, __dir__ = lazy_exports(__name__, _SUBMODULE)
