"""The Python API in a few calls: ``adm.load_model("imagenet64")`` gives a ready model.

>>> import adm
>>> m = adm.load_model("imagenet64", checkpoint="64x64_diffusion.pt",
...                    classifier_checkpoint="64x64_classifier.pt")
>>> m.model, m.classifier, m.process          # networks + the diffusion process
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from torch import nn

from adm.core.distributed import pick_device
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn
from adm.diffusion.adapters import ModelAdapter
from adm.diffusion.continuous import NoiseSchedule
from adm.diffusion.karras import Schedule
from adm.diffusion.process import GaussianProcess, LossType
from adm.hub.checkpoints import Signature, load_into, load_state_dict, signature
from adm.presets import Preset, Registry, default_registry
from adm.spec.factory import (
    build_classifier,
    build_model,
    build_process,
    noise_schedule,
    parameterization,
)
from adm.spec.flags import (
    ClassifierFlags,
    DiffusionFlags,
    ModelFlags,
    SuperResFlags,
    parse_flags,
    parse_model_flags,
)


@dataclass
class LoadedModel:
    """A diffusion network with its process, and the guiding classifier when there is one.

    The process (``process``: the original's respaced chain) is built on first use: the samplers
    walk ``schedule`` and build the chain their grid needs, so sampling never builds it.
    """

    model: nn.Module
    flags: ModelFlags | SuperResFlags
    classifier: nn.Module | None = None
    classifier_flags: ClassifierFlags | None = None
    preset: Preset | None = None
    checkpoint: Path | None = None  # the files the weights came from
    classifier_checkpoint: Path | None = None
    respacing: str | None = None  # the steps of ``process`` (None: the flags' timestep_respacing)
    classifier_noise: DiffusionFlags | None = None  # the classifier's training process, when not the model's

    @property
    def classifier_schedule(self) -> NoiseSchedule | None:
        """The schedule the classifier reads time on: its own training process for a model with
        continuous noise levels; None (the model's own timesteps, as the original passes them) for a
        VP model, where a classifier trained on another process is warned about instead."""
        if self.classifier_noise is None or self.schedule.discrete:
            return None
        return noise_schedule(self.classifier_noise)

    @cached_property
    def process(self) -> GaussianProcess:
        return build_process(self.flags, respacing=self.respacing)[0]

    @property
    def adapter(self) -> ModelAdapter:
        """How the network's output is read (``adm.diffusion.adapters``)."""
        return parameterization(self.flags)[0]

    @property
    def loss_type(self) -> LossType:
        return parameterization(self.flags)[1]

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def num_classes(self) -> int | None:
        return self.flags.num_classes if self.flags.class_cond else None

    @cached_property
    def schedule(self) -> Schedule:
        """The noise levels the network was trained on, in continuous time (what every sampler walks)."""
        return noise_schedule(self.flags)


def default_device() -> torch.device:
    """The best available accelerator: CUDA, then Apple's MPS, else the CPU."""
    return pick_device()


def _preset_signatures(registry: Registry, classifier: bool) -> Iterator[tuple[str, Signature]]:
    """Key/shape signatures of every preset's network, built lazily on the meta device."""
    seen: dict[str, Signature] = {}
    for name, preset in registry.presets.items():
        flags = preset.classifier_flags if classifier else preset.model_flags
        if flags is None:
            continue
        key = flags.model_dump_json()
        if key not in seen:
            builder = build_classifier if classifier else build_model
            seen[key] = signature(builder(flags, device="meta"))
        yield (f"{name} classifier" if classifier else name), seen[key]


def load_weights(module: nn.Module, checkpoint: str | Path, *, what: str, registry: Registry, classifier: bool) -> nn.Module:
    """Load a checkpoint into a (meta-built) module, explaining any architecture mismatch."""
    state = load_state_dict(checkpoint)
    return load_into(module, state, what=f"{what} {checkpoint}", candidates=_preset_signatures(registry, classifier))


def _resolve(checkpoint: str | Path | None, artifact: str | None, download: bool, what: str, registry: Registry,
             on_progress: ProgressFn | None) -> Path:
    if checkpoint is not None:
        return Path(checkpoint)
    if artifact is None:
        raise UsageError(f"no {what} checkpoint given and the preset names none", "pass the checkpoint path")
    from adm.hub.download import ensure_artifact

    return ensure_artifact(artifact, download=download, registry=registry, on_progress=on_progress)


def load_model(
    preset: str | Preset | None = None,
    *,
    checkpoint: str | Path | None = None,
    classifier_checkpoint: str | Path | None = None,
    model_flags: str | dict | ModelFlags | SuperResFlags | None = None,
    classifier_flags: str | dict | ClassifierFlags | None = None,
    with_classifier: bool = True,
    steps: str | None = None,
    device: str | torch.device | None = None,
    download: bool = False,
    registry: Registry | None = None,
    on_progress: ProgressFn | None = None,
) -> LoadedModel:
    """Build a preset's (or flags') networks, load their weights, and set up the process.

    Checkpoints default to the preset's cached downloads (``download=True`` fetches what is
    missing, reporting bytes to ``on_progress``). ``steps`` is a respacing string (``"250"``, ``"ddim25"``) overriding the flags.
    """
    registry = registry or default_registry()
    if isinstance(preset, str):
        preset = registry.preset(preset)
    if preset is None and model_flags is None:
        raise UsageError("give a preset name or model flags")
    flags = _as_model_flags(model_flags) if model_flags is not None else preset.model_flags
    cflags = _as_classifier_flags(classifier_flags) if classifier_flags is not None else (preset.classifier_flags if preset else None)
    device = torch.device(device) if device is not None else default_device()

    model_path = _resolve(checkpoint, preset.checkpoint if preset else None, download, "model", registry, on_progress)
    model = load_weights(build_model(flags, device="meta"), model_path, what="model", registry=registry, classifier=False)
    classifier = classifier_path = None
    if with_classifier and cflags is not None:
        artifact = preset.classifier_checkpoint if preset else None
        classifier_path = _resolve(classifier_checkpoint, artifact, download, "classifier", registry, on_progress)
        classifier = load_weights(build_classifier(cflags, device="meta"), classifier_path, what="classifier", registry=registry, classifier=True)
        classifier = classifier.to(device).eval()
    return LoadedModel(
        model=model.to(device).eval(),
        respacing=steps,
        flags=flags,
        classifier=classifier,
        classifier_flags=cflags if classifier is not None else None,
        preset=preset,
        checkpoint=model_path,
        classifier_checkpoint=classifier_path,
    )


def _as_model_flags(value) -> ModelFlags | SuperResFlags:
    return value if isinstance(value, (ModelFlags, SuperResFlags)) else parse_model_flags(value)


def _as_classifier_flags(value) -> ClassifierFlags:
    return value if isinstance(value, ClassifierFlags) else parse_flags(ClassifierFlags, value)
