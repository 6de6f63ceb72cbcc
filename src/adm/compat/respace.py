"""``guided_diffusion.respace``: the respaced diffusion and its timestep-mapping model wrapper."""

from __future__ import annotations

from adm.compat.diffusion import GaussianDiffusion, SpacedDiffusion, _WrappedModel, space_timesteps

__all__ = ["GaussianDiffusion", "SpacedDiffusion", "_WrappedModel", "space_timesteps"]
