"""Building blocks of the ADM networks, laid out so their ``state_dict`` keys are the original's.

The submodule names and ``nn.Sequential`` indices below (``in_layers.0``, ``emb_layers.1``,
``out_layers.3``, ``op``, ``conv``) are not a style choice: they are the key names of OpenAI's
released checkpoints, which must load without renaming.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def timestep_embedding(
    timesteps: torch.Tensor, dim: int, max_period: float = 10000.0
) -> torch.Tensor:
    """Sinusoidal embedding ``[cos(t*f), sin(t*f)]`` of (possibly fractional) timesteps, shape [N, dim].

    Cosine comes first, unlike the Transformer paper: the released checkpoints were trained this
    way, so swapping the halves silently breaks them. The arithmetic follows the original step for
    step in float32 so the embedding is bit-identical. An odd ``dim`` gets one zero column.
    """
    half = dim // 2
    steps = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(-math.log(max_period) * steps / half)
    args = timesteps[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32, C) with float32 statistics, returned in the input's dtype.

    Half-precision statistics over large feature maps are inaccurate; computing them in float32
    is what makes bf16/fp16 autocast safe. By default (``upcast=True``) that is done as the
    original does it: copy x to float32, normalise, copy back. With ``upcast=False`` a CPU input
    goes to the kernel as it is: PyTorch's CPU GroupNorm accumulates bf16/fp16 input in float32
    itself (with float32 or same-dtype affine parameters), so the result is the same without the
    two full-size copies (2-4x faster on a bf16 feature map). Other devices always upcast: their
    kernels' mixed-dtype support is not something this code has been measured on.
    """

    def __init__(
        self, num_channels: int, num_groups: int = 32, eps: float = 1e-5, upcast: bool = True
    ):
        super().__init__(num_groups, num_channels, eps=eps)
        self.upcast = upcast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.upcast and x.device.type == "cpu":
            return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        weight = None if self.weight is None else self.weight.float()
        bias = None if self.bias is None else self.bias.float()
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def param_dtype(module: nn.Module) -> torch.dtype:
    """dtype of a module's first parameter: the dtype its input is cast to before it runs."""
    return next(module.parameters()).dtype


def zero_module(module: nn.Module) -> nn.Module:
    """Zero a module's parameters, so a residual branch starts as the identity (as the original)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


class TimestepBlock(nn.Module):
    """Marker base class: a block whose ``forward(x, emb)`` also takes the timestep embedding
    (``TimestepSequential`` hands ``emb`` only to these)."""


class TimestepSequential(nn.Sequential):
    """``nn.Sequential`` that hands ``emb`` to the children that are ``TimestepBlock``s.

    Keeping it a Sequential is what gives the original ``input_blocks.{i}.{j}`` key layout.
    """

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x, emb) if isinstance(layer, TimestepBlock) else layer(x)
        return x


def _resample(x: torch.Tensor, mode: str | None) -> torch.Tensor:
    """Parameter-free resampling of up/down ResBlocks: nearest x2 or 2x2 average pooling."""
    if mode == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    if mode == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    return x


class Upsample(nn.Module):
    """Nearest-neighbour x2, then (if ``use_conv``) a 3x3 conv stored under the key ``conv``."""

    def __init__(self, channels: int, use_conv: bool = True):
        super().__init__()
        self.channels = channels
        self.conv = nn.Conv2d(channels, channels, 3, padding=1) if use_conv else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _resample(x, "up")
        return self.conv(x) if self.conv is not None else x


class Downsample(nn.Module):
    """Halve the resolution: a stride-2 3x3 conv, or 2x2 average pooling; the key is ``op`` either way."""

    def __init__(self, channels: int, use_conv: bool = True):
        super().__init__()
        self.channels = channels
        self.op = (
            nn.Conv2d(channels, channels, 3, stride=2, padding=1) if use_conv else nn.AvgPool2d(2)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class ResBlock(TimestepBlock):
    """Residual block conditioned on the timestep embedding, optionally resampling (up/down x2).

    Two conditioning modes, as the original: with ``use_scale_shift_norm`` the embedding gives a
    per-channel ``(scale, shift)`` (scale is the FIRST half) applied as ``norm(h)*(1+scale)+shift``;
    otherwise it is added to ``h`` before the second normalisation.
    """

    def __init__(
        self,
        channels: int,  # input channels
        emb_channels: int,  # width of the timestep embedding (4 * model_channels)
        dropout: float = 0.0,  # dropout before the last conv
        out_channels: int | None = None,  # output channels; None = same as input
        use_scale_shift_norm: bool = False,  # FiLM-style conditioning instead of an added bias
        up: bool = False,  # nearest x2 upsampling inside the block
        down: bool = False,  # 2x2 average-pool downsampling inside the block
        use_checkpoint: bool = False,  # recompute activations in backward to save memory
    ):
        super().__init__()
        if up and down:
            raise ValueError("a ResBlock resamples up or down, not both")
        out_channels = out_channels or channels
        self.channels = channels
        self.out_channels = out_channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.resample = "up" if up else "down" if down else None

        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(p=dropout),
            zero_module(nn.Conv2d(out_channels, out_channels, 3, padding=1)),
        )
        # A 1x1 conv only where the channel count changes; Identity has no state_dict keys.
        if out_channels == channels:
            self.skip_connection: nn.Module = nn.Identity()
        else:
            self.skip_connection = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        norm, act, conv = self.in_layers
        # Resampling sits between norm+act and the conv, on both the branch and the skip path.
        h = conv(_resample(act(norm(x)), self.resample))
        x = _resample(x, self.resample)

        e = self.emb_layers(emb).to(h.dtype)[..., None, None]
        out_norm, out_act, out_dropout, out_conv = self.out_layers
        if self.use_scale_shift_norm:
            scale, shift = e.chunk(2, dim=1)
            h = out_norm(h) * (1 + scale) + shift
        else:
            h = out_norm(h + e)
        h = out_conv(out_dropout(out_act(h)))
        return self.skip_connection(x) + h
