"""``guided_diffusion.gaussian_diffusion``: the diffusion object and the helpers forks import.

``GaussianDiffusion`` is ``adm.compat.diffusion``'s (the maths is ``adm.diffusion``); the loss helpers
are ``adm.diffusion.losses``'. ``betas_for_alpha_bar`` and ``get_named_beta_schedule`` return
float64 numpy arrays and ``_extract_into_tensor`` reads them (or tensors), as in the original.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from adm.compat.diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    get_named_beta_schedule,
)
from adm.diffusion import schedules
from adm.diffusion.losses import discretized_gaussian_log_likelihood, mean_flat, normal_kl


def betas_for_alpha_bar(num_diffusion_timesteps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999) -> np.ndarray:
    """Betas that discretise a continuous alpha_bar(t), t in [0, 1], capped at ``max_beta`` (float64)."""
    return schedules.betas_for_alpha_bar(num_diffusion_timesteps, alpha_bar, max_beta).numpy()


def _extract_into_tensor(arr, timesteps: torch.Tensor, broadcast_shape) -> torch.Tensor:
    """``arr[timesteps]`` as float32 on the timesteps' device, broadcast to ``broadcast_shape``.

    ``arr`` is a 1-D array (numpy, as the diffusion's schedule attributes are, or a tensor); the
    values are gathered in its own precision and only then cast, as in the original.
    """
    values = torch.as_tensor(arr).to(device=timesteps.device)[timesteps].float()
    return values.reshape(values.shape + (1,) * (len(broadcast_shape) - values.ndim)).expand(broadcast_shape)


__all__ = [
    "GaussianDiffusion", "LossType", "ModelMeanType", "ModelVarType", "_extract_into_tensor", "betas_for_alpha_bar",
    "discretized_gaussian_log_likelihood", "get_named_beta_schedule", "mean_flat", "normal_kl",
]
