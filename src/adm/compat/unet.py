"""``guided_diffusion.unet``: the networks and the building blocks forks assemble their own from.

Each block is adm's (``adm.models``) under the original's name, constructor arguments and
attribute names, with the same ``state_dict`` keys, so a fork's network built from these blocks
loads the fork's checkpoint. Differences, all loud: only 2-D blocks (``dims=2``; ``conv_nd`` and
``avg_pool_nd`` in ``adm.compat.nn`` take any), and attention is checkpointed only when asked
(``use_checkpoint=True``), not always. ``isinstance(block, ResBlock)`` (and the other block
classes) also holds for the adm blocks inside ``UNetModel`` & co.

``AttentionBlock`` runs its attention through its ``attention`` submodule (``QKVAttention`` or
``QKVAttentionLegacy``), as the original does, so a hook on or a replacement of that submodule
sees every call; the networks built by ``UNetModel`` use adm's fused attention instead.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from adm.compat.models import EncoderUNetModel, SuperResModel, UNetModel
from adm.compat.nn import (
    AcceptsAdmBlocks,
    avg_pool_nd,
    checkpoint,
    conv_nd,
    linear,
    normalization,
    timestep_embedding,
    zero_module,
)
from adm.models import attention, layers
from adm.models.layers import TimestepBlock


def _two_d(dims: int) -> None:
    if dims != 2:
        raise ValueError(f"only 2-D blocks are supported (dims={dims})")


class TimestepEmbedSequential(layers.TimestepSequential, TimestepBlock, metaclass=AcceptsAdmBlocks):
    """A Sequential that hands the timestep embedding to the children that are ``TimestepBlock``s."""

    _adm_class = layers.TimestepSequential


class Upsample(layers.Upsample, metaclass=AcceptsAdmBlocks):
    """Nearest-neighbour x2, then (``use_conv``) a 3x3 conv to ``out_channels``."""

    _adm_class = layers.Upsample

    def __init__(self, channels, use_conv, dims=2, out_channels=None):
        _two_d(dims)
        super().__init__(channels, use_conv)
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims
        if use_conv and self.out_channels != channels:
            self.conv = nn.Conv2d(channels, self.out_channels, 3, padding=1)

    def forward(self, x):
        if x.shape[1] != self.channels:
            raise ValueError(f"Upsample of {self.channels} channels got {x.shape[1]}")
        return super().forward(x)


class Downsample(layers.Downsample, metaclass=AcceptsAdmBlocks):
    """A stride-2 3x3 conv to ``out_channels`` (``use_conv``), else 2x2 average pooling."""

    _adm_class = layers.Downsample

    def __init__(self, channels, use_conv, dims=2, out_channels=None):
        _two_d(dims)
        if not use_conv and out_channels not in (None, channels):
            raise ValueError("Downsample without use_conv cannot change the channel count")
        super().__init__(channels, use_conv)
        self.out_channels = out_channels or channels
        self.use_conv = use_conv
        self.dims = dims
        if use_conv and self.out_channels != channels:
            self.op = nn.Conv2d(channels, self.out_channels, 3, stride=2, padding=1)

    def forward(self, x):
        if x.shape[1] != self.channels:
            raise ValueError(f"Downsample of {self.channels} channels got {x.shape[1]}")
        return super().forward(x)


class ResBlock(layers.ResBlock, metaclass=AcceptsAdmBlocks):
    """adm's ResBlock with the original's arguments; ``use_conv`` makes a channel-changing skip
    connection a 3x3 conv instead of a 1x1 one."""

    _adm_class = layers.ResBlock

    def __init__(
        self, channels, emb_channels, dropout, out_channels=None, use_conv=False, use_scale_shift_norm=False,
        dims=2, use_checkpoint=False, up=False, down=False,
    ):
        _two_d(dims)
        super().__init__(
            channels, emb_channels, dropout, out_channels=out_channels, use_scale_shift_norm=use_scale_shift_norm,
            up=up, down=down, use_checkpoint=use_checkpoint,
        )
        self.emb_channels = emb_channels
        self.dropout = dropout
        self.use_conv = use_conv
        self.updown = up or down
        if use_conv and self.out_channels != channels:
            self.skip_connection = nn.Conv2d(channels, self.out_channels, 3, padding=1)


def count_flops_attn(model, _x, y) -> None:
    """A ``thop`` counter for the attention modules: two [T x T] matmuls over C channels."""
    b, c, *spatial = y[0].shape
    tokens = int(np.prod(spatial))
    model.total_ops += torch.DoubleTensor([2 * b * tokens**2 * c])


class _QKVAttention(nn.Module):
    """Attention of a fused [N, 3*H*C, T] qkv tensor -> [N, H*C, T], in one of the two layouts."""

    order: attention.AttentionOrder

    def __init__(self, n_heads: int):
        super().__init__()
        self.n_heads = n_heads

    def forward(self, qkv: torch.Tensor) -> torch.Tensor:
        if qkv.shape[1] % (3 * self.n_heads):
            raise ValueError(f"{qkv.shape[1]} qkv channels do not split into 3 x {self.n_heads} heads")
        return attention.attend(*attention.split_qkv(qkv, self.n_heads, self.order))

    count_flops = staticmethod(count_flops_attn)


class QKVAttentionLegacy(_QKVAttention):
    """Heads first, then q, k, v inside each head: the layout of most released checkpoints."""

    order = "legacy"


class QKVAttention(_QKVAttention):
    """q, k, v first, then heads inside each: the 64x64 model's layout."""

    order = "new"


class AttentionBlock(attention.AttentionBlock, metaclass=AcceptsAdmBlocks):
    """Residual self-attention over all positions (keys ``norm``, ``qkv``, ``proj_out``)."""

    _adm_class = attention.AttentionBlock

    def __init__(self, channels, num_heads=1, num_head_channels=-1, use_checkpoint=False, use_new_attention_order=False):
        super().__init__(
            channels, num_heads=num_heads, num_head_channels=num_head_channels,
            attention_order="new" if use_new_attention_order else "legacy", use_checkpoint=use_checkpoint,
        )
        self.attention = (QKVAttention if use_new_attention_order else QKVAttentionLegacy)(self.num_heads)

    def _forward(self, x):
        # Through self.attention, so what a fork hooks or swaps there is what runs.
        b, c, *spatial = x.shape
        tokens = x.reshape(b, c, -1)
        h = self.proj_out(self.attention(self.qkv(self.norm(tokens))))
        return (tokens + h).reshape(b, c, *spatial)


class AttentionPool2d(attention.AttentionPool2d, metaclass=AcceptsAdmBlocks):
    """The classifier's CLIP-style attention pooling, with the original's argument names."""

    _adm_class = attention.AttentionPool2d

    def __init__(self, spacial_dim: int, embed_dim: int, num_heads_channels: int, output_dim: int | None = None):
        super().__init__(spacial_dim, embed_dim, num_heads_channels, out_channels=output_dim)


__all__ = [
    "AttentionBlock", "AttentionPool2d", "Downsample", "EncoderUNetModel", "QKVAttention", "QKVAttentionLegacy",
    "ResBlock", "SuperResModel", "TimestepBlock", "TimestepEmbedSequential", "UNetModel", "Upsample",
    "avg_pool_nd", "checkpoint", "conv_nd", "count_flops_attn", "linear", "normalization",
    "timestep_embedding", "zero_module",
]
