"""``improved_diffusion.unet``: its networks and blocks, under its names and constructor arguments.

improved-diffusion's U-Net is the network guided-diffusion grew from: with heads counted by
``num_heads`` (no ``num_head_channels``), plain resampling (no ``resblock_updown``) and the
heads-first qkv layout, its ``state_dict`` is key-for-key guided-diffusion's, so these classes are
``adm.compat.unet``'s under improved-diffusion's signatures (no ``image_size``; ``AttentionBlock``
takes ``(channels, num_heads, use_checkpoint)``; ``QKVAttention`` gets its heads already folded
into the batch). ``get_feature_vectors`` reads the blocks' outputs with forward hooks, so the
features are those of the one forward pass adm runs.
"""

from __future__ import annotations

import torch

from adm.compat import unet as guided
from adm.compat.models import _bind
from adm.compat.nn import (
    avg_pool_nd,
    checkpoint,
    conv_nd,
    linear,
    normalization,
    timestep_embedding,
    zero_module,
)
from adm.compat.unet import Downsample, ResBlock, TimestepBlock, TimestepEmbedSequential, Upsample
from adm.models import attention


class QKVAttention(guided.QKVAttentionLegacy):
    """Attention of a [N x 3C x T] qkv tensor whose heads the caller folded into N (improved-diffusion's)."""

    def __init__(self):
        super().__init__(1)


class AttentionBlock(guided.AttentionBlock):
    """Residual self-attention (keys ``norm``, ``qkv``, ``proj_out``), heads-first qkv layout."""

    _adm_class = attention.AttentionBlock

    def __init__(self, channels, num_heads=1, use_checkpoint=False):
        super().__init__(channels, num_heads=num_heads, use_checkpoint=use_checkpoint)
        self.attention = QKVAttention()

    def _forward(self, x):
        # As improved-diffusion runs it: heads folded into the batch, then self.attention.
        b, c, *spatial = x.shape
        tokens = x.reshape(b, c, -1)
        qkv = self.qkv(self.norm(tokens))
        h = self.attention(qkv.reshape(b * self.num_heads, -1, qkv.shape[2]))
        h = self.proj_out(h.reshape(b, -1, h.shape[-1]))
        return (tokens + h).reshape(b, c, *spatial)


class _Features:
    """``get_feature_vectors`` and ``inner_dtype``: improved-diffusion's additions to its networks."""

    @property
    def inner_dtype(self) -> torch.dtype:
        """The dtype of the trunk's weights (float32: ``convert_to_fp16`` is autocast here)."""
        return next(self.input_blocks.parameters()).dtype

    def get_feature_vectors(self, x, timesteps, *args, **kwargs) -> dict:
        """``{"down": [...], "middle": h, "up": [...]}``: each block's output, in x's dtype."""
        result: dict = {"down": [], "up": []}

        def keep(where):
            def hook(_module, _inputs, output):
                if where == "middle":
                    result["middle"] = output.to(x.dtype)
                else:
                    result[where].append(output.to(x.dtype))
            return hook

        hooks = [b.register_forward_hook(keep("down")) for b in self.input_blocks]
        hooks.append(self.middle_block.register_forward_hook(keep("middle")))
        hooks += [b.register_forward_hook(keep("up")) for b in self.output_blocks]
        try:
            self(x, timesteps, *args, **kwargs)
        finally:
            for hook in hooks:
                hook.remove()
        return result


class UNetModel(_Features, guided.UNetModel):
    def __init__(
        self, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions, dropout=0,
        channel_mult=(1, 2, 4, 8), conv_resample=True, dims=2, num_classes=None, use_checkpoint=False,
        num_heads=1, num_heads_upsample=-1, use_scale_shift_norm=False,
    ):
        # guided-diffusion's constructor only records image_size (left None: improved-diffusion has none).
        super().__init__(
            None, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
            dropout=dropout, channel_mult=channel_mult, conv_resample=conv_resample, dims=dims,
            num_classes=num_classes, use_checkpoint=use_checkpoint, num_heads=num_heads,
            num_heads_upsample=num_heads_upsample, use_scale_shift_norm=use_scale_shift_norm,
        )


class SuperResModel(_Features, guided.SuperResModel):
    """The upsampler: the low-res image, bilinearly resized, is concatenated after x (6 input channels)."""

    def __init__(self, in_channels, *args, **kwargs):
        original = _bind(UNetModel.__init__, in_channels, *args, **kwargs)
        super().__init__(None, **original)


__all__ = [
    "AttentionBlock", "Downsample", "QKVAttention", "ResBlock", "SuperResModel", "TimestepBlock",
    "TimestepEmbedSequential", "UNetModel", "Upsample", "avg_pool_nd", "checkpoint", "conv_nd", "linear",
    "normalization", "timestep_embedding", "zero_module",
]
