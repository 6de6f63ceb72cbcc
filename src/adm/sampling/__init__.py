"""Samplers and what they are built from: the denoiser interface, guidance, noise, the registry.

A sampler is one function ``sampler(denoiser, x, sigmas, *, noise, callback, **options)`` (see
``adm.sampling.samplers``); the grid ``sigmas`` comes from ``adm.diffusion.grids``; the
``Denoiser`` gives the (guided, clipped) x_0 estimate at any noise level; ``registry`` knows every
sampler's options and properties and finds plugins. ``chain`` holds the original's exact
discrete steps, which ``ddpm``, ``ddim`` and ``adm.compat`` use.

The names below are imported on first use: ``adm.sampling.edit_settings`` (what ``adm edit``
builds its options from) loads without torch, so ``adm --help`` starts at once.
"""

from __future__ import annotations

from adm.core.lazy import lazy_exports

_SUBMODULE = {  # name -> the submodule that defines it
    "ChainDenoiser": "chain",
    "Step": "chain",
    "ddim_reverse_step": "chain",
    "ddim_step": "chain",
    "ddpm_step": "chain",
    "iterate_steps": "chain",
    "Denoiser": "denoiser",
    "dynamic_threshold": "denoiser",
    "ClassifierGuidance": "guidance",
    "classifier_grad_fn": "guidance",
    "condition_mean": "guidance",
    "condition_score": "guidance",
    "NoiseSource": "noise",
    "PerSampleNoise": "noise",
    "ReplayNoise": "noise",
    "BUILTIN": "registry",
    "SamplerOptions": "registry",
    "SamplerSpec": "registry",
    "available_samplers": "registry",
    "get_sampler": "registry",
    "sample_ddim": "samplers",
    "sample_ddpm": "samplers",
    "sample_dpmpp_2m": "samplers",
    "sample_dpmpp_2m_sde": "samplers",
    "sample_heun": "samplers",
    "sample_unipc": "unipc",
}

__all__ = sorted(_SUBMODULE)
__getattr__, __dir__ = lazy_exports(__name__, _SUBMODULE)
