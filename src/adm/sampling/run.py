"""One sampler run: the denoiser, its guidance and the plan's sampler, put together once."""

from __future__ import annotations

from collections.abc import Callable

import torch

from adm.core.errors import UsageError
from adm.diffusion.adapters import ModelAdapter
from adm.diffusion.continuous import NoiseSchedule
from adm.diffusion.karras import Schedule
from adm.sampling.denoiser import Denoiser
from adm.sampling.guidance import ClassifierGuidance
from adm.sampling.settings import SamplingPlan


def run_sampler(
    model: Callable,
    schedule: Schedule,
    adapter: ModelAdapter,
    plan: SamplingPlan,
    x: torch.Tensor,
    noise: Callable[[torch.Tensor], torch.Tensor],
    *,
    model_kwargs: dict | None = None,
    classifier: Callable | None = None,
    classifier_schedule: NoiseSchedule | None = None,
    labels: torch.Tensor | None = None,
    callback: Callable[[dict], None] | None = None,
    denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sampler: Callable | None = None,
) -> torch.Tensor:
    """One sampler run from x (noisy images at the grid's first level), guided by ``classifier``
    towards ``labels`` when the plan's scale is > 0 (``classifier_schedule``: the classifier's
    training schedule; default the model's own).

    This is the single path that the CLI, the Python API and the golden parity tests share.
    ``denoised_fn`` transforms every x_0 estimate (inpainting); ``sampler(denoiser, x, sigmas,
    noise=...)`` replaces the plan's sampler (RePaint's resampling loop).
    """
    settings = plan.settings
    guidance = None
    if classifier is not None and plan.guided:
        if labels is None:
            raise UsageError("classifier guidance needs target labels")
        guidance = ClassifierGuidance(classifier, labels, settings.scale, _classifier_schedule(schedule, classifier_schedule),
                                      settings.guidance_interval)
    denoiser = Denoiser(model, schedule, adapter, model_kwargs or {}, guidance, settings.clip_denoised, settings.threshold,
                        denoised_fn)
    if sampler is not None:
        return sampler(denoiser, x, plan.sigmas, noise=noise)
    return plan.spec(denoiser, x, plan.sigmas, noise=noise, callback=callback, options=plan.options)


def _classifier_schedule(schedule: Schedule, given: NoiseSchedule | None) -> NoiseSchedule:
    if given is not None:
        return given
    if not schedule.discrete:
        raise UsageError("classifier guidance of a model with continuous noise levels needs the classifier's own schedule",
                         "use a preset that pairs them, or guide a VP model")
    return schedule
