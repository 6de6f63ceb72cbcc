"""The encoder half shared by the diffusion UNet and the noisy classifier.

Both original networks build ``time_embed``, ``input_blocks`` and ``middle_block`` with the same
loop; here that loop exists once, and returns the channel bookkeeping the UNet's decoder needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .attention import ATTENTION_ORDERS, AttentionBlock, AttentionOrder
from .layers import Downsample, ResBlock, TimestepSequential, timestep_embedding


def time_embed_mlp(model_channels: int) -> nn.Sequential:
    """Sinusoidal features -> 4*mc embedding (keys ``time_embed.0``, ``time_embed.2``)."""
    emb = 4 * model_channels
    return nn.Sequential(nn.Linear(model_channels, emb), nn.SiLU(), nn.Linear(emb, emb))


def embed_timesteps(time_embed: nn.Sequential, timesteps, batch: int) -> torch.Tensor:
    """``time_embed(sinusoidal(t))`` for [N] (or scalar, broadcast to ``batch``) timesteps.

    The sinusoidal features are made in float32 and cast to the MLP's dtype, so a model moved
    wholesale to bf16 works as well as one run under autocast.
    """
    first = time_embed[0]
    timesteps = torch.as_tensor(timesteps, device=first.weight.device)
    if timesteps.ndim == 0:
        timesteps = timesteps.expand(batch)
    return time_embed(timestep_embedding(timesteps, first.in_features).to(first.weight.dtype))


@dataclass(frozen=True)
class BlockFactory:
    """The settings every block of one network shares, so the level loops only say what differs."""

    emb_channels: int  # width of the timestep embedding
    dropout: float  # ResBlock dropout
    use_scale_shift_norm: bool  # ResBlock conditioning mode
    use_checkpoint: bool  # gradient checkpointing of ResBlocks and attention
    num_head_channels: int | None  # fixed width per attention head; None/-1 = use num_heads
    attention_order: AttentionOrder  # qkv layout of the checkpoint

    def __post_init__(self):
        if self.attention_order not in ATTENTION_ORDERS:
            raise ValueError(
                f"attention_order must be one of {ATTENTION_ORDERS}, got {self.attention_order!r}"
            )

    def res(
        self, channels: int, out_channels: int | None = None, *, up=False, down=False
    ) -> ResBlock:
        return ResBlock(
            channels,
            self.emb_channels,
            self.dropout,
            out_channels=out_channels,
            use_scale_shift_norm=self.use_scale_shift_norm,
            up=up,
            down=down,
            use_checkpoint=self.use_checkpoint,
        )

    def attention(self, channels: int, num_heads: int) -> AttentionBlock:
        return AttentionBlock(
            channels,
            num_heads=num_heads,
            num_head_channels=self.num_head_channels,
            attention_order=self.attention_order,
            use_checkpoint=self.use_checkpoint,
        )


@dataclass
class Encoder:
    """What ``build_encoder`` made, plus the bookkeeping the decoder / classifier head needs."""

    input_blocks: nn.ModuleList
    middle_block: TimestepSequential
    skip_channels: list[int]  # output channels of every input block, in order (the UNet's skips)
    channels: int  # channels leaving the middle block
    downsample: int  # total downsampling factor at the bottom


def build_encoder(
    blocks: BlockFactory,
    *,
    in_channels: int,
    model_channels: int,
    channel_mult: Sequence[float],
    num_res_blocks: int,
    attention_resolutions: Sequence[int],
    conv_resample: bool,
    resblock_updown: bool,
    num_heads: int,
) -> Encoder:
    """Input conv, then per level ``num_res_blocks`` ResBlocks (+ attention) and a downsampler."""
    ch = int(channel_mult[0] * model_channels)
    input_blocks = nn.ModuleList([TimestepSequential(nn.Conv2d(in_channels, ch, 3, padding=1))])
    skip_channels = [ch]
    ds = 1  # current downsampling factor; attention is placed by it
    last_level = len(channel_mult) - 1
    for level, mult in enumerate(channel_mult):
        out_ch = int(mult * model_channels)
        for _ in range(num_res_blocks):
            layers: list[nn.Module] = [blocks.res(ch, out_ch)]
            ch = out_ch
            if ds in attention_resolutions:
                layers.append(blocks.attention(ch, num_heads))
            input_blocks.append(TimestepSequential(*layers))
            skip_channels.append(ch)
        if level != last_level:  # every level but the deepest ends by halving the resolution
            down = (
                blocks.res(ch, ch, down=True) if resblock_updown else Downsample(ch, conv_resample)
            )
            input_blocks.append(TimestepSequential(down))
            skip_channels.append(ch)
            ds *= 2

    # The bottleneck always has attention, whatever attention_resolutions says.
    middle_block = TimestepSequential(
        blocks.res(ch), blocks.attention(ch, num_heads), blocks.res(ch)
    )
    return Encoder(input_blocks, middle_block, skip_channels, ch, ds)
