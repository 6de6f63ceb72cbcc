"""What a training run is made of, from what the caller asked: the one rule the CLI and the API share.

The request names a training task (``kind``, ``adm.training.tasks``): its config class, its
network flag set and its ``fit``. Values are layered: the config's defaults < the training
preset's < the run dir's saved config (when it holds a checkpoint, so re-running the same
request continues exactly) < what the request gives explicitly. The network is the preset's (or, continuing a run, the saved one),
with the request's flags on top. With the original's ``--use_fp16 True`` and no precision asked
for, the run uses fp16 autocast.

>>> import adm
>>> adm.train("tiny", data="digits.npz", run_dir="runs/tiny", iterations=200)   # again: continues
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn
from adm.presets import Registry, default_registry
from adm.spec.flags import (
    ClassifierFlags,
    DiffusionFlags,
    ModelFlags,
    SuperResFlags,
    parse_flags,
    parse_model_flags,
    split_flag_string,
)
from adm.training.config import CommonTrainConfig, renamed_options
from adm.training.engine import TrainResult
from adm.training.rundir import newest_checkpoint, read_run_config, run_config, run_flags
from adm.training.tasks import NOISE_KEY, TaskSpec, get_task


@dataclass(frozen=True)
class RunRequest:
    """What the caller asked for; everything else comes from the layers."""

    kind: str  # a training task (adm.training.tasks): "diffusion", "classifier" or a plugin's
    run_dir: Path
    preset: str | None = None
    network_flags: str | Mapping[str, Any] | None = None  # the original's flag syntax, on top of the network
    options: Mapping[str, Any] = field(default_factory=dict)  # values of the task's config (TrainConfig, ...)


@dataclass(frozen=True)
class ResolvedRun:
    """A request with every layer applied: the network, the noising process, the config."""

    kind: str
    run_dir: Path
    flags: ModelFlags | SuperResFlags | ClassifierFlags
    config: CommonTrainConfig
    preset: str | None
    noise: DiffusionFlags | None = None  # tasks that record it (classifiers): the process they are trained on

    @property
    def task(self) -> TaskSpec:
        return get_task(self.kind)

    def document(self) -> dict[str, Any]:
        """The run's ``config.json`` as it will be written: the task's ``document``, or the flags
        with the class count and the channel count read from the data (``open_training_data``:
        the preset's or continued run's network takes the data's channels unless the request's
        flags set them, and then they must agree)."""
        document = self.task.document_fn
        if document is not None:
            return document(self)
        from adm.training.data import open_training_data

        flags, _ = open_training_data(self.flags, self.config.data, self.config.labels, init=self.config.init)
        return run_config(self.kind, flags, self.config.model_dump(mode="json"), diffusion_flags=self.noise,
                          preset=self.preset)


def _saved(run_dir: Path, kind: str) -> dict[str, Any] | None:
    """The run dir's config when it holds a checkpoint of the same kind (to continue it)."""
    if newest_checkpoint(run_dir) is None:
        return None
    doc = read_run_config(run_dir)
    return doc if doc["kind"] == kind else None


def _given(flags: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if flags is None:
        return {}
    return split_flag_string(flags) if isinstance(flags, str) else dict(flags)


def _parse(task: TaskSpec, values: dict[str, Any]) -> ModelFlags | SuperResFlags | ClassifierFlags:
    return parse_flags(ClassifierFlags, values) if task.flags == "classifier" else parse_model_flags(values)


def _network(task: TaskSpec, request: RunRequest, registry: Registry, saved):
    """(flags, noising process or None, preset): the preset's, else the run's being continued,
    with the request's flags on top. A task that records the noising process (the classifier)
    takes a ``classifier_train.py``-style flag string: its process flags go to the process."""
    flags, preset = None, request.preset
    noise = DiffusionFlags() if task.noise else None
    if preset is not None:
        chosen = registry.training_preset(preset, task.kind, task.flags)
        flags = registry.network_flags(chosen, task.flags)
        noise = chosen.noise_flags() if task.noise else None
    elif saved is not None:
        flags, preset = run_flags(saved), saved.get("preset")
        noise = parse_flags(DiffusionFlags, saved.get(NOISE_KEY) or {}) if task.noise else None
    given = _given(request.network_flags)
    if given:
        process = {k: v for k, v in given.items() if k in DiffusionFlags.model_fields} if task.noise else {}
        network = {k: v for k, v in given.items() if k not in process}
        flags = _parse(task, {**(flags.given() if flags else {}), **network})
        if task.noise:
            noise = parse_flags(DiffusionFlags, {**noise.given(), **process})
    return flags, noise, preset


def _no_network(task: TaskSpec) -> UsageError:
    if task.flags == "classifier":
        return UsageError("no classifier given", "pass --preset NAME or --classifier-flags \"--image_size 64 ...\"")
    return UsageError("no network given", "pass --preset NAME or --model-flags \"--image_size 64 ...\"")


def resolve_run(request: RunRequest, registry: Registry | None = None) -> ResolvedRun:
    """Apply the layers to a request; an unknown kind, a missing network or data is a one-line UsageError."""
    task = get_task(request.kind)
    registry = registry or default_registry()
    saved = _saved(request.run_dir, request.kind)
    preset_train = dict(registry.training_preset(request.preset, task.kind, task.flags).train) if request.preset else {}
    flags, noise, preset = _network(task, request, registry, saved)
    if flags is None:
        raise _no_network(task)
    layers = (preset_train, saved["train"] if saved else {}, request.options)
    values = {k: v for layer in layers for k, v in renamed_options(layer).items()}  # later layers win
    data = task.config_class.model_fields.get("data")
    if "data" not in values and data is not None and data.is_required():
        raise UsageError("no training data given", "pass --data FOLDER_OR_NPZ")
    fp16 = flags.classifier_use_fp16 if task.flags == "classifier" else flags.use_fp16
    if "precision" not in values and fp16:
        values["precision"] = "fp16"  # the original's --use_fp16 True, now as torch.amp
    return ResolvedRun(request.kind, Path(request.run_dir), flags, task.make_config(values), preset, noise)


def start_run(run: ResolvedRun, *, dist: Dist | None = None, on_progress: ProgressFn | None = None,
              resume: bool = False) -> TrainResult:
    """Train (or continue) a resolved run into its run dir, with its task's ``fit``."""
    return run.task.fit_fn(run, dist=dist, on_progress=on_progress, resume=resume)


def train_task(kind: str, preset: str | None = None, *, run_dir: str | Path,
               network_flags: str | Mapping | None = None, resume: bool = False, dist: Dist | None = None,
               on_progress: ProgressFn | None = None, registry: Registry | None = None, **options: Any) -> TrainResult:
    """Train the task ``kind`` (``adm.training.tasks``, a plugin's too) into ``run_dir``; calling it
    again continues it. ``options`` are fields of the task's config; ``network_flags`` go on top of
    the preset's (or the continued run's) network."""
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None}
    request = RunRequest(kind, Path(run_dir), preset, network_flags, options)
    return start_run(resolve_run(request, registry), dist=dist, on_progress=on_progress, resume=resume)


def train(preset: str | None = None, *, run_dir: str | Path, model_flags: str | Mapping | None = None,
          resume: bool = False, dist: Dist | None = None, on_progress: ProgressFn | None = None,
          registry: Registry | None = None, **options: Any) -> TrainResult:
    """Train a diffusion model (or an upsampler) into ``run_dir``; calling it again continues it.

    ``options`` are ``TrainConfig`` fields (``data=``, ``iterations=``, ``batch_size=``, ...).
    """
    return train_task("diffusion", preset, run_dir=run_dir, network_flags=model_flags, resume=resume, dist=dist,
                      on_progress=on_progress, registry=registry, **options)


def train_classifier(preset: str | None = None, *, run_dir: str | Path, classifier_flags: str | Mapping | None = None,
                           resume: bool = False, dist: Dist | None = None, on_progress: ProgressFn | None = None,
                           registry: Registry | None = None, **options: Any) -> TrainResult:
    """Train the noisy classifier used for guidance into ``run_dir`` (``ClassifierTrainConfig`` options)."""
    return train_task("classifier", preset, run_dir=run_dir, network_flags=classifier_flags, resume=resume, dist=dist,
                      on_progress=on_progress, registry=registry, **options)
