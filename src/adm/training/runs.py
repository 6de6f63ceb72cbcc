"""What a training run is made of, from what the caller asked: the one rule the CLI and the API share.

Values are layered: the config's defaults < the training preset's < the run dir's saved config
(when it holds a checkpoint, so re-running the same request continues exactly) < what the
request gives explicitly. The network is the preset's (or, continuing a run, the saved one),
with the request's flags on top. With the original's ``--use_fp16 True`` and no precision asked
for, the run uses fp16 autocast.

>>> import adm
>>> adm.train("tiny", data="digits.npz", run_dir="runs/tiny", iterations=200)   # again: continues
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
from adm.training.config import ClassifierTrainConfig, TrainConfig, make_config, renamed_options
from adm.training.engine import TrainResult
from adm.training.rundir import newest_checkpoint, read_run_config, run_config

Kind = Literal["diffusion", "classifier"]


@dataclass(frozen=True)
class RunRequest:
    """What the caller asked for; everything else comes from the layers."""

    kind: Kind
    run_dir: Path
    preset: str | None = None
    network_flags: str | Mapping[str, Any] | None = None  # the original's flag syntax, on top of the network
    options: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig / ClassifierTrainConfig values


@dataclass(frozen=True)
class ResolvedRun:
    """A request with every layer applied: the network, the noising process, the config."""

    kind: Kind
    run_dir: Path
    flags: ModelFlags | SuperResFlags | ClassifierFlags
    config: TrainConfig | ClassifierTrainConfig
    preset: str | None
    noise: DiffusionFlags | None = None  # classifiers: the process they are trained on

    def document(self) -> dict[str, Any]:
        """The run's ``config.json`` as it will be written (the class count read from the data)."""
        from adm.training.data import open_training_data

        flags, _ = open_training_data(self.flags, self.config.data, self.config.labels, init=self.config.init)
        if self.kind == "diffusion":
            from adm.training.diffusion import trained_flags

            flags = trained_flags(flags, self.config)  # what fit_diffusion records (null_class, use_checkpoint)
        return run_config(self.kind, flags, self.config.model_dump(mode="json"), diffusion_flags=self.noise,
                          preset=self.preset)


def _saved(run_dir: Path, kind: Kind) -> dict[str, Any] | None:
    """The run dir's config when it holds a checkpoint of the same kind (to continue it)."""
    if newest_checkpoint(run_dir) is None:
        return None
    doc = read_run_config(run_dir)
    return doc if doc["kind"] == kind else None


def _given(flags: str | Mapping[str, Any] | None) -> dict[str, Any]:
    if flags is None:
        return {}
    return split_flag_string(flags) if isinstance(flags, str) else dict(flags)


def _classifier_network(request: RunRequest, registry: Registry, saved) -> tuple[ClassifierFlags | None, DiffusionFlags, str | None]:
    flags, noise, preset = None, DiffusionFlags(), request.preset
    if preset is not None:
        chosen = registry.training_preset(preset, "classifier")
        flags, noise = registry.network_flags(chosen), chosen.noise_flags()
    elif saved is not None:
        flags = parse_flags(ClassifierFlags, saved["classifier_flags"])
        noise = parse_flags(DiffusionFlags, saved.get("diffusion_flags") or {})
        preset = saved.get("preset")
    given = _given(request.network_flags)
    if given:
        # a classifier_train.py-style flag string: the noising process's flags go to the process
        network = {k: v for k, v in given.items() if k not in DiffusionFlags.model_fields}
        process = {k: v for k, v in given.items() if k in DiffusionFlags.model_fields}
        flags = parse_flags(ClassifierFlags, {**(flags.given() if flags else {}), **network})
        noise = parse_flags(DiffusionFlags, {**noise.given(), **process})
    return flags, noise, preset


def _diffusion_network(request: RunRequest, registry: Registry, saved) -> tuple[ModelFlags | SuperResFlags | None, str | None]:
    flags, preset = None, request.preset
    if preset is not None:
        flags = registry.network_flags(registry.training_preset(preset, "diffusion"))
    elif saved is not None:
        flags, preset = parse_model_flags(saved["model_flags"]), saved.get("preset")
    given = _given(request.network_flags)
    if given:
        flags = parse_model_flags({**(flags.given() if flags else {}), **given})
    return flags, preset


def resolve_run(request: RunRequest, registry: Registry | None = None) -> ResolvedRun:
    """Apply the layers to a request; a missing network or data is a one-line UsageError."""
    registry = registry or default_registry()
    saved = _saved(request.run_dir, request.kind)
    preset_train = dict(registry.training_preset(request.preset, request.kind).train) if request.preset else {}
    if request.kind == "classifier":
        flags, noise, preset = _classifier_network(request, registry, saved)
        if flags is None:
            raise UsageError("no classifier given", "pass --preset NAME or --classifier-flags \"--image_size 64 ...\"")
        fp16, cls = flags.classifier_use_fp16, ClassifierTrainConfig
    else:
        (flags, preset), noise = _diffusion_network(request, registry, saved), None
        if flags is None:
            raise UsageError("no network given", "pass --preset NAME or --model-flags \"--image_size 64 ...\"")
        fp16, cls = flags.use_fp16, TrainConfig
    layers = (preset_train, saved["train"] if saved else {}, request.options)
    values = {k: v for layer in layers for k, v in renamed_options(layer).items()}  # later layers win
    if "data" not in values:
        raise UsageError("no training data given", "pass --data FOLDER_OR_NPZ")
    if "precision" not in values and fp16:
        values["precision"] = "fp16"  # the original's --use_fp16 True, now as torch.amp
    return ResolvedRun(request.kind, Path(request.run_dir), flags, make_config(cls, values), preset, noise)


def start_run(run: ResolvedRun, *, dist: Dist | None = None, on_progress: ProgressFn | None = None,
              resume: bool = False) -> TrainResult:
    """Train (or continue) a resolved run into its run dir."""
    if run.kind == "classifier":
        from adm.training.classifier import fit_classifier

        return fit_classifier(run.config, run.flags, run.run_dir, diffusion=run.noise, dist=dist,
                                on_progress=on_progress, preset=run.preset, resume=resume)
    from adm.training.diffusion import fit_diffusion

    return fit_diffusion(run.config, run.flags, run.run_dir, dist=dist, on_progress=on_progress, preset=run.preset,
                           resume=resume)


def _request(kind: Kind, preset, run_dir, flags, options: dict[str, Any]) -> RunRequest:
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None}
    return RunRequest(kind, Path(run_dir), preset, flags, options)


def train(preset: str | None = None, *, run_dir: str | Path, model_flags: str | Mapping | None = None,
          resume: bool = False, dist: Dist | None = None, on_progress: ProgressFn | None = None,
          registry: Registry | None = None, **options: Any) -> TrainResult:
    """Train a diffusion model (or an upsampler) into ``run_dir``; calling it again continues it.

    ``options`` are ``TrainConfig`` fields (``data=``, ``iterations=``, ``batch_size=``, ...).
    """
    request = _request("diffusion", preset, run_dir, model_flags, options)
    return start_run(resolve_run(request, registry), dist=dist, on_progress=on_progress, resume=resume)


def train_classifier(preset: str | None = None, *, run_dir: str | Path, classifier_flags: str | Mapping | None = None,
                           resume: bool = False, dist: Dist | None = None, on_progress: ProgressFn | None = None,
                           registry: Registry | None = None, **options: Any) -> TrainResult:
    """Train the noisy classifier used for guidance into ``run_dir`` (``ClassifierTrainConfig`` options)."""
    request = _request("classifier", preset, run_dir, classifier_flags, options)
    return start_run(resolve_run(request, registry), dist=dist, on_progress=on_progress, resume=resume)
