"""``improved_diffusion.respace``: the respaced diffusion (improved-diffusion's signatures) and its
timestep-mapping model wrapper, ``adm.compat.respace``'s."""

from __future__ import annotations

from adm.compat import diffusion as guided
from adm.compat.diffusion import _WrappedModel, space_timesteps
from adm.compat.improved.gaussian_diffusion import GaussianDiffusion


class SpacedDiffusion(guided.SpacedDiffusion, GaussianDiffusion):
    """A diffusion that walks only ``use_timesteps`` of the base chain built from ``kwargs``."""


__all__ = ["GaussianDiffusion", "SpacedDiffusion", "_WrappedModel", "space_timesteps"]
