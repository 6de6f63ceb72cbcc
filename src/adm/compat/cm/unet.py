"""``cm.unet``: consistency_models' network and blocks, under its names and constructor arguments.

consistency_models' ``UNetModel`` is guided-diffusion's (same signature and ``state_dict`` keys)
whose attention always orders qkv channels as (3, heads, d), whatever ``use_new_attention_order``
says; its attention ``qkv`` / ``proj_out`` are 1x1 ``Conv2d`` weights [C_out, C_in, 1, 1], which
adm's attention blocks take on load (squeezed to their ``Conv1d`` shape), so
``model.load_state_dict(torch.load(path))`` reads a checkpoint its code saved. ``AttentionBlock``
takes its arguments (``attention_type``, ``dims``, ``channels_last`` are accepted; flash and the
fallback compute the same attention); both ``QKVAttention`` and ``QKVAttentionLegacy`` are the
(3, heads, d) layout, as there. Cross-attention (``encoder_channels``) is not provided.
"""

from __future__ import annotations

from adm.compat import unet as guided
from adm.compat.cm.nn import (
    avg_pool_nd,
    checkpoint,
    conv_nd,
    linear,
    normalization,
    timestep_embedding,
    zero_module,
)
from adm.compat.unet import (
    AttentionPool2d,
    Downsample,
    QKVAttention,
    ResBlock,
    TimestepBlock,
    TimestepEmbedSequential,
    Upsample,
    count_flops_attn,
)
from adm.models import attention

QKVAttentionLegacy = QKVAttention  # consistency_models' "legacy" attention splits q, k, v first too


class AttentionBlock(guided.AttentionBlock):
    """Residual self-attention (keys ``norm``, ``qkv``, ``proj_out``), (3, heads, d) qkv layout."""

    _adm_class = attention.AttentionBlock

    def __init__(
        self, channels, num_heads=1, num_head_channels=-1, use_checkpoint=False, attention_type="flash",
        encoder_channels=None, dims=2, channels_last=False, use_new_attention_order=False,
    ):
        if encoder_channels is not None:
            raise ValueError("cross-attention (encoder_channels) is not provided by adm.compat.cm")
        guided._two_d(dims)
        super().__init__(channels, num_heads, num_head_channels, use_checkpoint, use_new_attention_order=True)
        self.attention_type = attention_type


class UNetModel(guided.UNetModel):
    """guided-diffusion's ``UNetModel`` with consistency_models' (3, heads, d) attention, always."""

    def __init__(
        self, image_size, in_channels, model_channels, out_channels, num_res_blocks, attention_resolutions,
        dropout=0, channel_mult=(1, 2, 4, 8), conv_resample=True, dims=2, num_classes=None,
        use_checkpoint=False, use_fp16=False, num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
        use_scale_shift_norm=False, resblock_updown=False, use_new_attention_order=False,
    ):
        original = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__(**{**original, "use_new_attention_order": True})


__all__ = [
    "AttentionBlock", "AttentionPool2d", "Downsample", "QKVAttention", "QKVAttentionLegacy", "ResBlock",
    "TimestepBlock", "TimestepEmbedSequential", "UNetModel", "Upsample", "avg_pool_nd", "checkpoint", "conv_nd",
    "count_flops_attn", "linear", "normalization", "timestep_embedding", "zero_module",
]
