"""The noisy classifier of classifier guidance (the original ``EncoderUNetModel``).

It is the UNet's encoder (``time_embed``, ``input_blocks``, ``middle_block``, built by the same
code) followed by a pooling head ``out``. Released classifiers use ``pool="attention"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from .attention import AttentionOrder, AttentionPool2d
from .encoder import BlockFactory, build_encoder, embed_timesteps, time_embed_mlp
from .layers import GroupNorm32, param_dtype, zero_module

Pool = Literal["adaptive", "attention", "spatial", "spatial_v2"]
POOLS: tuple[str, ...] = ("adaptive", "attention", "spatial", "spatial_v2")


class NoisyClassifier(nn.Module):
    """Classifier of noisy images ``x_t``: ``classifier(x, timesteps) -> logits [N, out_channels]``."""

    def __init__(
        self,
        image_size: int,  # side of the (square) input images; sizes the attention pool
        in_channels: int,  # channels of the input image (3 for RGB)
        model_channels: int,  # base width; level widths are int(mult * model_channels)
        out_channels: int,  # number of logits (classes)
        num_res_blocks: int,  # ResBlocks per level
        attention_resolutions: Sequence[int],  # DOWNSAMPLE RATES with attention, e.g. (4, 8, 16)
        dropout: float = 0.0,  # ResBlock dropout probability
        channel_mult: Sequence[float] = (1, 2, 4, 8),  # width multiplier per level (floats allowed)
        conv_resample: bool = True,  # conv downsamplers (else average pooling)
        use_checkpoint: bool = False,  # gradient checkpointing of ResBlocks and attention
        num_heads: int = 1,  # attention heads (when num_head_channels is unset)
        num_head_channels: int | None = -1,  # width per head, overrides num_heads; -1/None: unset
        use_scale_shift_norm: bool = False,  # FiLM (scale, shift) conditioning in ResBlocks
        resblock_updown: bool = False,  # downsample with ResBlocks instead of Downsample
        attention_order: AttentionOrder = "legacy",  # qkv layout of the trunk's attention blocks
        pool: Pool = "adaptive",  # head: "adaptive", "attention", "spatial" or "spatial_v2"
    ):
        super().__init__()
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if pool == "attention" and num_head_channels in (None, -1):
            raise ValueError('pool="attention" needs num_head_channels (the pool head width)')
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.pool = pool

        blocks = BlockFactory(
            emb_channels=4 * model_channels,
            dropout=dropout,
            use_scale_shift_norm=use_scale_shift_norm,
            use_checkpoint=use_checkpoint,
            num_head_channels=num_head_channels,
            attention_order=attention_order,
        )
        enc = build_encoder(
            blocks,
            in_channels=in_channels,
            model_channels=model_channels,
            channel_mult=channel_mult,
            num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions,
            conv_resample=conv_resample,
            resblock_updown=resblock_updown,
            num_heads=num_heads,
        )

        self.time_embed = time_embed_mlp(model_channels)
        self.input_blocks = enc.input_blocks
        self.middle_block = enc.middle_block

        ch = enc.channels
        # Spatial pools read the mean of every input block's output and of the middle block's.
        features = sum(enc.skip_channels) + ch
        if pool == "adaptive":
            self.out = nn.Sequential(
                GroupNorm32(ch),
                nn.SiLU(),
                nn.AdaptiveAvgPool2d(1),
                zero_module(nn.Conv2d(ch, out_channels, 1)),
                nn.Flatten(),
            )
        elif pool == "attention":
            self.out = nn.Sequential(
                GroupNorm32(ch),
                nn.SiLU(),
                AttentionPool2d(image_size // enc.downsample, ch, num_head_channels, out_channels),
            )
        elif pool == "spatial":
            self.out = nn.Sequential(
                nn.Linear(features, 2048), nn.ReLU(), nn.Linear(2048, out_channels)
            )
        else:  # spatial_v2
            self.out = nn.Sequential(
                nn.Linear(features, 2048),
                GroupNorm32(2048),
                nn.SiLU(),
                nn.Linear(2048, out_channels),
            )

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """x [N, C, H, W] noisy images, timesteps [N] as the diffusion model sees them -> logits."""
        emb = embed_timesteps(self.time_embed, timesteps, x.shape[0])

        spatial = self.pool.startswith("spatial")
        h, means = x.to(param_dtype(self.input_blocks)), []  # trunk, then head, in their own dtypes
        for block in self.input_blocks:
            h = block(h, emb)
            if spatial:
                means.append(h.mean(dim=(2, 3)))
        h = self.middle_block(h, emb)
        if spatial:
            means.append(h.mean(dim=(2, 3)))
            h = torch.cat(means, dim=-1)
        return self.out(h.to(param_dtype(self.out)))
