"""One sampler run: the denoiser, its guidance and the plan's sampler, put together once."""

from __future__ import annotations

from collections.abc import Callable

import torch

from adm.core.errors import UsageError
from adm.diffusion.continuous import NoiseSchedule
from adm.diffusion.process import Parameterization
from adm.sampling.denoiser import Denoiser
from adm.sampling.guidance import ClassifierGuidance
from adm.sampling.settings import SamplingPlan


def run_sampler(
    model: Callable,
    schedule: NoiseSchedule,
    param: Parameterization,
    plan: SamplingPlan,
    x: torch.Tensor,
    noise: Callable[[torch.Tensor], torch.Tensor],
    *,
    model_kwargs: dict | None = None,
    classifier: Callable | None = None,
    labels: torch.Tensor | None = None,
    callback: Callable[[dict], None] | None = None,
    denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sampler: Callable | None = None,
) -> torch.Tensor:
    """One sampler run from x (noisy images at the grid's first level), guided by ``classifier``
    towards ``labels`` when the plan's scale is > 0.

    This is the single path that the CLI, the Python API and the golden parity tests share.
    ``denoised_fn`` transforms every x_0 estimate (inpainting); ``sampler(denoiser, x, sigmas,
    noise=...)`` replaces the plan's sampler (RePaint's resampling loop).
    """
    settings = plan.settings
    guidance = None
    if classifier is not None and plan.guided:
        if labels is None:
            raise UsageError("classifier guidance needs target labels")
        guidance = ClassifierGuidance(
            classifier, labels, settings.scale, settings.guidance_interval, schedule.num_steps,
            1000.0 / schedule.num_steps if schedule.rescale_timesteps else 1.0,
        )
    denoiser = Denoiser(model, schedule, param, model_kwargs or {}, guidance, settings.clip_denoised, settings.threshold,
                        denoised_fn)
    if sampler is not None:
        return sampler(denoiser, x, plan.sigmas, noise=noise)
    return plan.spec(denoiser, x, plan.sigmas, noise=noise, callback=callback, options=plan.options)
