"""Samplers and what they are built from: the denoiser interface, guidance, noise, the registry.

A sampler is one function ``sampler(denoiser, x, sigmas, *, noise, callback, **options)`` (see
``adm.sampling.samplers``); the grid ``sigmas`` comes from ``adm.diffusion.grids``; the
``Denoiser`` gives the (guided, clipped) x_0 estimate at any noise level; ``registry`` knows every
sampler's options and properties and finds plugins. ``chain`` holds the original's exact
discrete steps, which ``ddpm``, ``ddim`` and ``adm.compat`` use.
"""

from adm.sampling.chain import (
    ChainDenoiser,
    Step,
    ddim_reverse_step,
    ddim_step,
    ddpm_step,
    iterate_steps,
)
from adm.sampling.denoiser import Denoiser, dynamic_threshold
from adm.sampling.guidance import (
    ClassifierGuidance,
    classifier_grad_fn,
    condition_mean,
    condition_score,
)
from adm.sampling.noise import NoiseSource, PerSampleNoise, ReplayNoise
from adm.sampling.registry import (
    BUILTIN,
    SamplerOptions,
    SamplerSpec,
    available_samplers,
    get_sampler,
)
from adm.sampling.samplers import (
    sample_ddim,
    sample_ddpm,
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_heun,
)
from adm.sampling.unipc import sample_unipc

__all__ = [
    "BUILTIN",
    "ChainDenoiser",
    "ClassifierGuidance",
    "Denoiser",
    "NoiseSource",
    "PerSampleNoise",
    "ReplayNoise",
    "SamplerOptions",
    "SamplerSpec",
    "Step",
    "available_samplers",
    "classifier_grad_fn",
    "condition_mean",
    "condition_score",
    "ddim_reverse_step",
    "ddim_step",
    "ddpm_step",
    "dynamic_threshold",
    "get_sampler",
    "iterate_steps",
    "sample_ddim",
    "sample_ddpm",
    "sample_dpmpp_2m",
    "sample_dpmpp_2m_sde",
    "sample_heun",
    "sample_unipc",
]
