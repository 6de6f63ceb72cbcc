"""One sampler run: the denoiser, its guidance and the plan's sampler, put together once."""

from __future__ import annotations

from collections.abc import Callable

import torch

from adm.core.errors import UsageError
from adm.diffusion.adapters import ModelAdapter
from adm.diffusion.karras import Schedule
from adm.sampling.denoiser import Denoiser
from adm.sampling.guidance.protocol import Guidance, GuidanceContext
from adm.sampling.guidance.registry import get_guidance
from adm.sampling.settings import SamplingPlan


def build_guidance(plan: SamplingPlan, schedule: Schedule, context: GuidanceContext) -> tuple[Guidance, ...]:
    """The plan's guidance methods, built from what the run has (``GuidanceContext``).

    The classifier reads time on its own training schedule; by default that is the model's, which
    only a model with a discrete chain has.
    """
    if context.classifier is not None and context.classifier_schedule is None:
        if not schedule.discrete:
            raise UsageError("classifier guidance of a model with continuous noise levels needs the classifier's own "
                             "schedule", "use a preset that pairs them, or guide a VP model")
        context = GuidanceContext(**{**context.__dict__, "classifier_schedule": schedule})
    return tuple(get_guidance(name).builder(scale, interval, context) for name, scale, interval in plan.settings.methods())


def run_sampler(
    model: Callable,
    schedule: Schedule,
    adapter: ModelAdapter,
    plan: SamplingPlan,
    x: torch.Tensor,
    noise: Callable[[torch.Tensor], torch.Tensor],
    *,
    model_kwargs: dict | None = None,
    context: GuidanceContext | None = None,
    callback: Callable[[dict], None] | None = None,
    denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sampler: Callable | None = None,
) -> torch.Tensor:
    """One sampler run from x (noisy images at the grid's first level), guided as the plan says
    with what ``context`` provides (labels, classifier, guide network, null label).

    This is the single path that the CLI, the Python API and the golden parity tests share.
    ``denoised_fn`` transforms every x_0 estimate (inpainting); ``sampler(denoiser, x, sigmas,
    noise=...)`` replaces the plan's sampler (RePaint's resampling loop).
    """
    settings = plan.settings
    guidance = build_guidance(plan, schedule, context or GuidanceContext())
    denoiser = Denoiser(model, schedule, adapter, model_kwargs or {}, guidance, settings.clip_denoised, settings.threshold,
                        denoised_fn)
    if sampler is not None:
        return sampler(denoiser, x, plan.sigmas, noise=noise)
    return plan.spec(denoiser, x, plan.sigmas, noise=noise, callback=callback, options=plan.options)
