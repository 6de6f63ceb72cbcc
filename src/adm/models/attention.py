"""Self-attention over feature maps and the CLIP-style attention pooling of the classifier head.

The released checkpoints use two layouts of the fused qkv projection's 3C output channels:

* ``"legacy"``: per head, ``[q_h, k_h, v_h]`` (all releases except the 64x64 diffusion model);
* ``"new"``:    ``[q, k, v]`` with heads contiguous inside each (64x64 diffusion, attention pooling).

They differ only by a permutation of the qkv rows, so loading weights with the wrong layout runs
without error and produces garbage: the layout is an explicit constructor argument here.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .layers import GroupNorm32, zero_module

AttentionOrder = Literal["legacy", "new"]
ATTENTION_ORDERS: tuple[str, ...] = ("legacy", "new")
# AttentionBlock's 1x1 projections, which consistency_models stores 4-D (see _load_from_state_dict).
POINTWISE_WEIGHTS = ("qkv.weight", "proj_out.weight")


def attention_heads(channels: int, num_heads: int, num_head_channels: int | None) -> int:
    """Head count: ``num_heads``, unless a per-head width is given (``None``/-1 = not given)."""
    if num_head_channels is None or num_head_channels == -1:
        return num_heads
    if channels % num_head_channels:
        raise ValueError(f"{channels} channels do not split into heads of {num_head_channels}")
    return channels // num_head_channels


def split_qkv(qkv: torch.Tensor, num_heads: int, order: AttentionOrder):
    """Split fused qkv [B, 3C, T] into q, k, v of shape [B, heads, T, C/heads]."""
    b, width, t = qkv.shape
    ch = width // (3 * num_heads)
    if order == "legacy":
        q, k, v = qkv.reshape(b, num_heads, 3 * ch, t).split(ch, dim=2)
    elif order == "new":
        q, k, v = (z.reshape(b, num_heads, ch, t) for z in qkv.chunk(3, dim=1))
    else:
        raise ValueError(f"attention_order must be one of {ATTENTION_ORDERS}, got {order!r}")
    return q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2)


def split_qkv_tokens(qkv: torch.Tensor, num_heads: int, order: AttentionOrder):
    """Split token-major fused qkv [B, T, 3C] into q, k, v of shape [B, heads, T, C/heads].

    The same split as ``split_qkv``, but each result's last (per-head channel) dimension has
    stride 1. That is what the fused SDPA kernels require (CPU flash attention among them):
    ``split_qkv``'s channel-first views have stride T there and fall back to the unfused math
    path, which is several times slower and runs reduced precision in float32 on the CPU.
    """
    b, t, width = qkv.shape
    ch = width // (3 * num_heads)
    if order == "legacy":
        parts = qkv.reshape(b, t, num_heads, 3, ch).unbind(3)
    elif order == "new":
        parts = qkv.reshape(b, t, 3, num_heads, ch).unbind(2)
    else:
        raise ValueError(f"attention_order must be one of {ATTENTION_ORDERS}, got {order!r}")
    return tuple(part.transpose(1, 2) for part in parts)


def pointwise(conv: nn.Conv1d, tokens: torch.Tensor) -> torch.Tensor:
    """A checkpoint's 1x1 ``Conv1d`` applied to token-major features [B, T, C_in] -> [B, T, C_out].

    The weight [C_out, C_in, 1] is viewed as a linear layer's [C_out, C_in] (no copy), so the
    projection is one GEMM on whatever strides ``tokens`` has, with no transposes around it.
    """
    return F.linear(tokens, conv.weight.squeeze(-1), conv.bias)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention of [B, H, T, ch] tensors, returned channels-first as [B, H*ch, Tq].

    The original scales q and k by ch**-0.25 each, i.e. the logits by 1/sqrt(ch): SDPA's default.
    Fused SDPA kernels accumulate the softmax in float32 for half inputs, as the original does.
    """
    out = F.scaled_dot_product_attention(q, k, v)
    b, h, t, ch = out.shape
    return out.transpose(-1, -2).reshape(b, h * ch, t)


def attend_tokens(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention of [B, H, T, ch] tensors (fused SDPA), returned token-major as [B, T, H*ch].

    bf16 inference on the CPU has a faster kernel, swapped in by ``optimize_for_inference``
    (``adm.models.blocked_attention``).
    """
    b, h, t, ch = q.shape
    return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, t, h * ch)


class AttentionBlock(nn.Module):
    """Residual multi-head self-attention over all spatial positions (keys ``norm``, ``qkv``, ``proj_out``).

    The projections are 1x1 ``Conv1d``s (weights [3C, C, 1] and [C, C, 1]) because that is how the
    checkpoints store them; they are applied as GEMMs on token-major features. The original
    scales q and k by ch**-0.25 each, i.e. the logits by 1/sqrt(ch): SDPA's default. Unlike the
    original, checkpointing happens only if asked for.
    """

    def __init__(
        self,
        channels: int,  # feature channels C
        num_heads: int = 1,  # head count when num_head_channels is unset
        num_head_channels: int | None = None,  # width per head, overrides num_heads; None/-1: unset
        attention_order: AttentionOrder = "legacy",  # qkv channel layout of the checkpoint
        use_checkpoint: bool = False,  # recompute activations in backward to save memory
    ):
        super().__init__()
        if attention_order not in ATTENTION_ORDERS:
            raise ValueError(
                f"attention_order must be one of {ATTENTION_ORDERS}, got {attention_order!r}"
            )
        self.channels = channels
        self.num_heads = attention_heads(channels, num_heads, num_head_channels)
        self.attention_order = attention_order
        self.use_checkpoint = use_checkpoint
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Accept consistency_models' 4-D projections: its checkpoints store ``qkv`` and
        ``proj_out`` as 1x1 ``Conv2d`` weights [C_out, C_in, 1, 1], the same numbers as these
        ``Conv1d`` weights [C_out, C_in, 1]. Squeezed here, every way of loading (``load_state_dict``
        with or without ``assign``, adm's loaders, a ported script) takes both forms."""
        for name in POINTWISE_WEIGHTS:
            key = prefix + name
            weight = state_dict.get(key)
            if weight is not None and weight.dim() == 4 and weight.shape[-2:] == (1, 1):
                state_dict[key] = weight.squeeze(-1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        # Token-major [B, T, C] throughout: the projections are plain GEMMs, q/k/v come out with
        # the layout fused SDPA kernels take, and attention's [B, T, H*ch] output is already the
        # [B, T, C] the output projection reads. For a channels_last x every reshape is a view.
        b, c, *spatial = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)
        q, k, v = split_qkv_tokens(pointwise(self.qkv, tokens), self.num_heads, self.attention_order)
        h = pointwise(self.proj_out, self.attend(q, k, v)).transpose(1, 2).reshape(b, c, *spatial)
        return x + h  # x first: the sum keeps x's memory format

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Attention of the split heads [B, H, T, ch], token-major [B, T, C]: what subclasses replace."""
        return attend_tokens(q, k, v)


class AttentionPool2d(nn.Module):
    """CLIP-style pooling: one query (the spatial mean) attends over all positions, then projects.

    Keys ``positional_embedding`` [C, S*S+1], ``qkv_proj`` and ``c_proj``. The original always uses
    the "new" qkv layout here, whatever the rest of the network uses.
    """

    def __init__(
        self,
        spatial_size: int,  # side S of the (square) feature map being pooled
        channels: int,  # feature channels C
        num_head_channels: int,  # width per head (heads = C // num_head_channels)
        out_channels: int | None = None,  # output width (e.g. number of classes); None = C
    ):
        super().__init__()
        self.positional_embedding = nn.Parameter(
            torch.randn(channels, spatial_size**2 + 1) / channels**0.5
        )
        self.qkv_proj = nn.Conv1d(channels, 3 * channels, 1)
        self.c_proj = nn.Conv1d(channels, out_channels or channels, 1)
        self.num_heads = attention_heads(channels, 1, num_head_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *_ = x.shape
        x = x.reshape(b, c, -1)
        x = torch.cat([x.mean(dim=-1, keepdim=True), x], dim=-1)  # mean token first: [B, C, 1+HW]
        x = x + self.positional_embedding[None].to(x.dtype)
        q, k, v = split_qkv(self.qkv_proj(x), self.num_heads, "new")
        # Only token 0 is returned, and each query attends independently: compute that one alone.
        return self.c_proj(attend(q[:, :, :1], k, v))[:, :, 0]
