"""``cm.nn``: guided-diffusion's helpers (``adm.compat.nn``) plus the two consistency_models adds."""

from __future__ import annotations

import torch

from adm.compat.nn import (
    GroupNorm32,
    SiLU,
    avg_pool_nd,
    checkpoint,
    conv_nd,
    linear,
    mean_flat,
    normalization,
    scale_module,
    timestep_embedding,
    update_ema,
    zero_module,
)


def append_dims(x: torch.Tensor, target_dims: int) -> torch.Tensor:
    """``x`` with singleton dimensions appended up to ``target_dims`` (a [N] coefficient over [N, C, H, W])."""
    missing = target_dims - x.ndim
    if missing < 0:
        raise ValueError(f"input has {x.ndim} dims but target_dims is {target_dims}, which is less")
    return x[(...,) + (None,) * missing]


def append_zero(x: torch.Tensor) -> torch.Tensor:
    """A grid of noise levels with the trailing 0 (the clean image)."""
    return torch.cat([x, x.new_zeros([1])])


__all__ = [
    "GroupNorm32", "SiLU", "append_dims", "append_zero", "avg_pool_nd", "checkpoint", "conv_nd", "linear",
    "mean_flat", "normalization", "scale_module", "timestep_embedding", "update_ema", "zero_module",
]
