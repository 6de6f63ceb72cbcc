"""``guided_diffusion.nn``: the helpers research code builds its own blocks from.

Signatures and semantics are the original's. Where adm has the helper it is re-exported
(``timestep_embedding``, ``zero_module``, ``mean_flat``); ``GroupNorm32`` is adm's float32-statistics
GroupNorm with the original's argument order (``GroupNorm32(num_groups, num_channels)``). The rest
are the thin functions the original defines over ``torch.nn``. ``checkpoint`` recomputes activations
with ``torch.utils.checkpoint`` (non-reentrant), so unlike the original's hand-written autograd
function it also supports double backward; gradients reach ``params`` without listing them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint as _recompute

from adm.diffusion.losses import mean_flat
from adm.models import layers
from adm.models.layers import timestep_embedding, zero_module

SiLU = nn.SiLU  # the original defines its own for PyTorch 1.5; the same function


class AcceptsAdmBlocks(type(nn.Module)):
    """Metaclass: ``isinstance(block, CompatClass)`` also holds for the adm class it stands for.

    Networks built by ``UNetModel`` & co. hold ``adm.models`` blocks; a fork that walks one looking
    for ``ResBlock`` / ``AttentionBlock`` / ``GroupNorm32`` instances must find them. Only the
    class that declares ``_adm_class`` matches adm's instances, not a fork's subclass of it.
    """

    def __instancecheck__(cls, obj) -> bool:
        native = cls.__dict__.get("_adm_class")
        return super().__instancecheck__(obj) or (native is not None and isinstance(obj, native))


class GroupNorm32(layers.GroupNorm32, metaclass=AcceptsAdmBlocks):
    """``nn.GroupNorm(num_groups, num_channels, eps, affine)`` computed in float32, returned in the
    input's dtype."""

    _adm_class = layers.GroupNorm32

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__(num_channels, num_groups=num_groups, eps=eps)
        if not affine:
            self.affine = False
            self.weight = None
            self.bias = None


def normalization(channels: int) -> GroupNorm32:
    """The standard normalisation layer: ``GroupNorm32(32, channels)``."""
    return GroupNorm32(32, channels)


def _by_dims(dims: int, kinds: tuple[type, type, type]) -> type:
    if dims not in (1, 2, 3):
        raise ValueError(f"unsupported dimensions: {dims}")
    return kinds[dims - 1]


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.Conv1d`` / ``Conv2d`` / ``Conv3d`` for ``dims`` 1 / 2 / 3."""
    return _by_dims(dims, (nn.Conv1d, nn.Conv2d, nn.Conv3d))(*args, **kwargs)


def avg_pool_nd(dims: int, *args, **kwargs) -> nn.Module:
    """``nn.AvgPool1d`` / ``AvgPool2d`` / ``AvgPool3d`` for ``dims`` 1 / 2 / 3."""
    return _by_dims(dims, (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d))(*args, **kwargs)


def linear(*args, **kwargs) -> nn.Linear:
    return nn.Linear(*args, **kwargs)


def update_ema(target_params: Iterable[torch.Tensor], source_params: Iterable[torch.Tensor], rate: float = 0.99) -> None:
    """In place: ``target = rate * target + (1 - rate) * source`` for each pair."""
    for target, source in zip(target_params, source_params, strict=False):
        target.detach().mul_(rate).add_(source, alpha=1 - rate)


def scale_module(module: nn.Module, scale: float) -> nn.Module:
    """Multiply a module's parameters by ``scale`` in place and return the module."""
    for p in module.parameters():
        p.detach().mul_(scale)
    return module


def checkpoint(func: Callable, inputs: Sequence, params: Iterable[torch.Tensor], flag: bool):
    """``func(*inputs)``; with ``flag``, activations are recomputed in backward instead of stored."""
    del params  # torch.utils.checkpoint sees the parameters func uses by itself
    if flag:
        return _recompute(func, *inputs, use_reentrant=False)
    return func(*inputs)


__all__ = [
    "GroupNorm32", "SiLU", "avg_pool_nd", "checkpoint", "conv_nd", "linear", "mean_flat", "normalization",
    "scale_module", "timestep_embedding", "update_ema", "zero_module",
]
