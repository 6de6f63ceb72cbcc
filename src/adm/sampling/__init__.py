"""The denoiser adapter, classifier guidance, noise sources and the sampler registry."""

from adm.sampling.denoiser import Denoiser
from adm.sampling.guidance import classifier_grad_fn, condition_mean, condition_score
from adm.sampling.noise import NoiseSource, PerSampleNoise, ReplayNoise
from adm.sampling.samplers import (
    SAMPLERS,
    Step,
    ddim_reverse_step,
    ddim_step,
    ddpm_step,
    get_sampler,
    iterate_steps,
    sample_ddim,
    sample_ddpm,
)

__all__ = [
    "SAMPLERS",
    "Denoiser",
    "NoiseSource",
    "PerSampleNoise",
    "ReplayNoise",
    "Step",
    "classifier_grad_fn",
    "condition_mean",
    "condition_score",
    "ddim_reverse_step",
    "ddim_step",
    "ddpm_step",
    "get_sampler",
    "iterate_steps",
    "sample_ddim",
    "sample_ddpm",
]
