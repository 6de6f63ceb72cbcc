"""From a source and sampling options to loaded networks and a plan: what sample, upsample and
edit share, done once per call.

The preset is looked up once, every file is checked before a network is built, the networks are
loaded and converted for the precision once, and the sampler's grid is planned once; every batch
of the run then reuses ``Setup``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adm.api.models import LoadedModel
from adm.api.options import SamplingOptions
from adm.api.sources import (
    Guide,
    ModelSource,
    Weights,
    guide_identity,
    identity,
    load_guide,
    load_networks,
    preflight,
    resolve_guide,
    resolve_weights,
)
from adm.core.distributed import Dist, pick_device
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn, report
from adm.presets import Preset, Registry
from adm.sampling.batches import Networks
from adm.sampling.choices import DEFAULT_SOLVER_STEPS
from adm.sampling.precision import default_precision, precision_warnings, prepare
from adm.sampling.registry import SamplerSpec, get_sampler
from adm.sampling.settings import SamplerSettings, SamplingPlan
from adm.spec.factory import default_sampler, noise_process, null_label
from adm.spec.flags import ModelFlags, SuperResFlags


@dataclass
class Setup:
    """A loaded model with the preset's defaults resolved."""

    preset: Preset | None
    loaded: LoadedModel
    plan: SamplingPlan
    steps_rule: str
    warnings: tuple[str, ...] = ()
    guide: LoadedModel | None = None  # autoguidance's weaker model

    def batch_size(self, requested: int | None) -> int:
        return given_or(requested, self.preset.sampling.batch_size if self.preset else 16)

    @property
    def num_classes(self) -> int:
        """How many classes a label may name: the model's when it is class-conditional, else its
        guiding classifier's (an unconditional model guided by a 10-class classifier draws 0..9)."""
        flags, classifier = self.loaded.flags, self.loaded.classifier_flags
        if flags.class_cond or classifier is None:
            return flags.num_classes
        return classifier.classifier_num_classes

    def networks(self) -> Networks:
        flags = self.loaded.flags
        superres = isinstance(flags, SuperResFlags)
        size = flags.large_size if superres else flags.image_size
        return Networks(self.loaded.model, self.loaded.schedule, self.loaded.adapter, self.loaded.device,
                        (flags.in_channels, size, size), self.num_classes, flags.class_cond, self.loaded.classifier,
                        flags.small_size if superres else None, self.loaded.classifier_schedule,
                        self.guide.model if self.guide is not None else None, null_label(flags))

    def identity(self) -> dict:
        """What made the images: every network's architecture and exact weights (the run's key)."""
        found = identity(self.loaded)
        return {**found, **guide_identity(self.guide)} if self.guide is not None else found

    def notes(self) -> dict:
        """Sidecar facts that are not part of the key: which rule chose the steps, where the weights were."""
        files = {"model": str(self.loaded.checkpoint)}
        if self.loaded.classifier_checkpoint is not None:
            files["classifier"] = str(self.loaded.classifier_checkpoint)
        if self.guide is not None:
            files["guide"] = str(self.guide.checkpoint)
        return {"steps_rule": self.steps_rule, "weights_files": files, "evaluations": self.plan.evaluations}

    def warn(self, on_progress: ProgressFn | None, total: int) -> None:
        for warning in (*self.warnings, *self.plan.warnings):
            report(on_progress, "sampling", 0, total, unit="img", message=f"warning: {warning}")
        for note in self.plan.notes:
            report(on_progress, "sampling", 0, total, unit="img", message=f"note: {note}")


def given_or(value, fallback):
    return fallback if value is None else value


def choose_steps(flags: ModelFlags | SuperResFlags, preset: Preset | None, sampler: SamplerSpec, steps: str | None) -> tuple[str, str]:
    """(steps, the rule that chose them): ``steps``, else the flags' --timestep_respacing (the
    original's samplers), else the preset's (when its sampler reads steps the same way), else
    every step of the model's chain (as the original), one step for a sampler with its own grid
    (``cm``) or 20 evaluations for a solver."""
    if steps:
        return steps, "--steps"
    if sampler.chain_only and flags.timestep_respacing:
        return flags.timestep_respacing, "the model flags' --timestep_respacing"
    if preset is not None and get_sampler(preset.sampling.sampler).steps_kind == sampler.steps_kind:
        return preset.sampling.steps, f"the default of the preset {preset.name}"
    if preset is not None and sampler.chain_only and preset.sampling.steps.isdigit():
        return preset.sampling.steps, f"the number of evaluations of the preset {preset.name}'s default"
    if sampler.chain_only:
        return str(flags.diffusion_steps), "every step of the model's chain (the original's default)"
    if sampler.grid is not None:
        return "1", f"one step ({sampler.name}'s default)"
    return DEFAULT_SOLVER_STEPS, f"the default for solvers ({DEFAULT_SOLVER_STEPS} evaluations)"


def _sampler_options(choice: SamplingOptions, preset: Preset | None, weights: Weights, sampler: str) -> dict:
    """The sampler's options: the preset's (for its own sampler) or the run's (its task's), then the user's."""
    options = dict(preset.sampling.options) if preset is not None and preset.sampling.sampler == sampler else {}
    options.update(weights.sampler_defaults.get(sampler, {}))
    options.update(choice.sampler_options)
    if choice.eta is not None:
        if "eta" in choice.sampler_options:
            raise UsageError("eta is given twice (--eta and --sampler-opt eta=...)", "give it once")
        options["eta"] = choice.eta
    return options


def cascade_upsampler(name: str, registry: Registry, base_flags: ModelFlags) -> Preset:
    """The upsampler preset of a cascade, checked against the base model before any sampling."""
    upsampler = registry.preset(name)
    if not upsampler.is_upsampler:
        names = ", ".join(n for n, p in registry.presets.items() if p.is_upsampler)
        raise UsageError(f"--upsample {name} is not an upsampler preset", f"upsampler presets: {names}")
    if upsampler.model_flags.small_size != base_flags.image_size:
        raise UsageError(
            f"{name} upsamples {upsampler.model_flags.small_size}x{upsampler.model_flags.small_size} images, "
            f"the base model makes {base_flags.image_size}x{base_flags.image_size}",
            f"pick the upsampler for {base_flags.image_size}px samples",
        )
    return upsampler


def _check_kind(preset: Preset | None, flags, upsampler: bool, registry: Registry) -> None:
    if preset is not None and preset.is_upsampler != upsampler:
        if upsampler:
            names = ", ".join(n for n, p in registry.presets.items() if p.is_upsampler)
            raise UsageError(f"{preset.name} is not an upsampler", f"upsampler presets: {names}")
        raise UsageError(f"{preset.name} is an upsampler", f"use `adm upsample --preset {preset.name} --base-samples ...`")
    if upsampler and not isinstance(flags, SuperResFlags):
        raise UsageError("the model flags do not describe an upsampler (they need --large_size and --small_size)")
    if not upsampler and isinstance(flags, SuperResFlags):
        raise UsageError("these model flags describe an upsampler (--large_size/--small_size)",
                         "upsample low-resolution images with `adm upsample` and the same model options, plus --base-samples")


def resolve(
    source: ModelSource, choice: SamplingOptions, registry: Registry, *, upsampler: bool, device, download: bool,
    dist: Dist | None, on_progress: ProgressFn | None = None, cascade: str | None = None, strength: float | None = None,
) -> Setup:
    """Check everything that can be checked, then load the networks and plan the sampler.

    ``cascade`` names the upsampler that will follow (checked now, not after the base samples);
    ``strength`` cuts the grid at that fraction of the chain (``adm edit``).
    """
    source.check()
    preset = registry.preset(source.preset) if source.preset else None
    weights = resolve_weights(source, preset)
    scale = choice.scale
    if scale is None:
        scale = preset.classifier_scale if preset and preset.classifier_flags else (1.0 if weights.classifier_flags else 0.0)
    flags = weights.model_flags
    sampler = get_sampler(choice.sampler or (preset.sampling.sampler if preset else default_sampler(flags)))
    _check_kind(preset, flags, upsampler, registry)
    device = torch.device(device if device is not None else (dist.device if dist else pick_device()))
    steps, rule = choose_steps(flags, preset, sampler, choice.steps)
    defaults = preset.sampling if preset else None
    settings = SamplerSettings.make(
        sampler=sampler.name, steps=steps, spacing=choice.spacing, options=_sampler_options(choice, preset, weights, sampler.name),
        scale=scale, threshold=choice.threshold,  # an unset interval lets the plan choose (guided ddim, cosine)
        guidance_interval=choice.guidance_interval,
        cfg_scale=given_or(choice.cfg_scale, preset.cfg_scale if preset else 0.0), cfg_interval=choice.cfg_interval,
        autoguidance=given_or(choice.autoguidance, preset.autoguidance if preset else 0.0),
        autoguidance_interval=choice.autoguidance_interval, guidance=choice.guidance,
        clip_denoised=given_or(choice.clip_denoised, defaults.clip_denoised if defaults else True),
        precision=choice.precision or default_precision(device, flags.use_fp16),
    )
    classified = settings.uses("classifier")
    if classified and weights.classifier_flags is None:
        raise UsageError("a guidance scale > 0 needs a classifier",
                         "pass --classifier-run-dir, or classifier flags and checkpoint, or use scale 0")
    if classified:
        weights.check_guidance()
    if settings.uses("null_label") and null_label(flags) is None:
        raise UsageError("classifier-free guidance needs a model trained with a null class (label dropout)",
                         "train one with `adm train --label-dropout 0.1`, or guide with --scale / --autoguidance")
    guide = _guide(source, preset, settings, registry, flags)
    extra = tuple(cascade_upsampler(cascade, registry, flags).artifacts) if cascade is not None else ()
    preflight(weights, preset, classified, download, registry, extra + (guide.artifacts if guide else ()))
    loaded = load_networks(weights, preset, with_classifier=classified, device=device, download=download,
                           registry=registry, on_progress=on_progress)
    top = None if strength is None else strength * (loaded.schedule.num_steps - 1)
    plan = settings.plan(loaded.schedule, max_timestep=top)  # validates before the networks are converted
    loaded.model = prepare(loaded.model, settings.precision, compile=choice.compile)
    if loaded.classifier is not None:
        loaded.classifier = prepare(loaded.classifier, settings.precision, gradients=True)
    guide_model = None
    if guide is not None:
        guide_model = load_guide(guide, device=device, download=download, registry=registry, on_progress=on_progress)
        guide_model.model = prepare(guide_model.model, settings.precision, compile=choice.compile)
    warnings = (*weights.warnings, *(guide.warnings if guide else ()), *precision_warnings(loaded.device, settings.precision))
    if guide_model is not None and Path(guide_model.checkpoint).resolve() == Path(loaded.checkpoint).resolve():
        warnings += ("the guide model is the model itself: autoguidance changes nothing (guide with an earlier "
                     "snapshot, runs/x@STEP, or a smaller model)",)
    if sampler.chain_only and rule.startswith("every step") and plan.evaluations > 1000:
        plan.notes.append(f"sampling every one of the chain's {plan.evaluations} steps (the original's default); the "
                          "published recipes use --steps 250, about as good and many times faster")
    return Setup(preset, loaded, plan, rule, warnings, guide_model)


def _guide(source: ModelSource, preset: Preset | None, settings: SamplerSettings, registry: Registry, flags) -> Guide | None:
    """Autoguidance's guide model (``--guide-model``, else the preset's), checked against the model:
    the same conditioning (``resolve_guide``) and the same noise process and parameterisation, since
    their raw outputs are mixed at the same network input."""
    spec = source.guide_model or (preset.guide_model if preset else None)
    if not settings.uses("guide"):
        if source.guide_model is not None:
            raise UsageError("--guide-model is the guide of autoguidance, and its scale is 0", "give --autoguidance W (> 0)")
        return None
    if spec is None:
        raise UsageError("autoguidance needs a guide model", "pass --guide-model (a preset, a run dir[@STEP] or a checkpoint)")
    guide = resolve_guide(spec, source.guide_flags, registry=registry, main_flags=flags)
    if noise_process(guide.flags) != noise_process(flags):
        raise UsageError(f"the guide model {spec} was trained on another noise process or parameterisation than the model",
                         "autoguidance mixes their outputs at the same input: guide with a model of the same diffusion flags")
    return guide
