"""The ADM diffusion UNet and its super-resolution variant, key-for-key the released checkpoints.

Module tree (and therefore ``state_dict`` order): ``time_embed``, ``label_emb`` (class-conditional
only), ``input_blocks``, ``middle_block``, ``output_blocks``, ``out``. Reduced precision: run under
``torch.autocast`` (GroupNorm and the attention softmax stay float32), or convert the trunk with
``adm.models.optimize_for_inference(model, dtype=...)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attention import AttentionOrder
from .encoder import BlockFactory, build_encoder, embed_timesteps, time_embed_mlp
from .layers import GroupNorm32, TimestepSequential, Upsample, param_dtype, zero_module


class UNet(nn.Module):
    """Noise-prediction UNet of "Diffusion Models Beat GANs": ``unet(x, timesteps, y=None)``."""

    def __init__(
        self,
        image_size: int,  # side of the (square) input images, in pixels
        in_channels: int,  # channels of the network input (3 for RGB)
        model_channels: int,  # base width; level widths are int(mult * model_channels)
        out_channels: int,  # output channels (3 = eps, 6 = eps + learned variance)
        num_res_blocks: int,  # ResBlocks per level in the encoder (the decoder has one more)
        attention_resolutions: Sequence[int],  # DOWNSAMPLE RATES with attention, e.g. (2, 4, 8)
        dropout: float = 0.0,  # ResBlock dropout probability
        channel_mult: Sequence[float] = (1, 2, 4, 8),  # width multiplier per level (floats allowed)
        conv_resample: bool = True,  # conv up/downsamplers (else nearest / average pooling)
        num_classes: int | None = None,  # number of class labels; None = unconditional
        use_checkpoint: bool = False,  # gradient checkpointing of ResBlocks and attention
        num_heads: int = 1,  # attention heads (when num_head_channels is unset)
        num_head_channels: int | None = -1,  # width per head, overrides num_heads; -1/None: unset
        num_heads_upsample: int | None = -1,  # decoder attention heads; -1/None: num_heads
        use_scale_shift_norm: bool = False,  # FiLM (scale, shift) conditioning in ResBlocks
        resblock_updown: bool = False,  # resample with ResBlocks instead of Upsample/Downsample
        attention_order: AttentionOrder = "legacy",  # qkv layout: "legacy" or "new" (64x64 model)
    ):
        super().__init__()
        if num_heads_upsample is None or num_heads_upsample == -1:
            num_heads_upsample = num_heads
        self.image_size = image_size
        self.in_channels = in_channels
        self.model_channels = model_channels
        self.out_channels = out_channels
        self.num_classes = num_classes

        emb_ch = 4 * model_channels
        blocks = BlockFactory(
            emb_channels=emb_ch,
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

        # Assignment order is state_dict order: keep it the original's.
        self.time_embed = time_embed_mlp(model_channels)
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_ch)
        self.input_blocks = enc.input_blocks
        self.middle_block = enc.middle_block

        # Decoder: mirror the encoder level by level, deepest first. Each block consumes one skip
        # (popped in reverse), so a level has num_res_blocks + 1 blocks: one per encoder block plus
        # one for the encoder's downsampler (or, at level 0, the input conv).
        ch, ds, skips = enc.channels, enc.downsample, list(enc.skip_channels)
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            out_ch = int(mult * model_channels)
            for i in range(num_res_blocks + 1):
                layers: list[nn.Module] = [blocks.res(ch + skips.pop(), out_ch)]
                ch = out_ch
                if ds in attention_resolutions:
                    layers.append(blocks.attention(ch, num_heads_upsample))
                if level > 0 and i == num_res_blocks:  # the level's last block doubles resolution
                    layers.append(
                        blocks.res(ch, ch, up=True)
                        if resblock_updown
                        else Upsample(ch, conv_resample)
                    )
                    ds //= 2
                self.output_blocks.append(TimestepSequential(*layers))
        assert not skips and ds == 1, "decoder must consume every skip and return to full size"

        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), zero_module(nn.Conv2d(ch, out_channels, 3, padding=1))
        )

    def embed(self, timesteps: torch.Tensor, y: torch.Tensor | None, batch: int) -> torch.Tensor:
        """Timestep embedding (+ class embedding): the conditioning every ResBlock receives."""
        emb = embed_timesteps(self.time_embed, timesteps, batch)
        if self.num_classes is not None:
            if y is None:
                raise ValueError(
                    f"this model is class-conditional ({self.num_classes} classes): pass labels y"
                )
            emb = emb + self.label_emb(y)
        elif y is not None:
            raise ValueError("this model is unconditional: call it without y")
        return emb

    def forward(
        self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x [N, C, H, W], timesteps [N] (integer or fractional), y [N] labels -> [N, out, H, W]."""
        emb = self.embed(timesteps, y, x.shape[0])
        # The trunk runs in its conv weights' dtype and the head in its own, as the original's
        # use_fp16 model does: a bf16/fp16 trunk (optimize_for_inference(dtype=...)) needs no
        # autocast, and under autocast both casts are no-ops on the way in.
        h, skips = x.to(param_dtype(self.input_blocks)), []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)  # current first, skip second
        # Contiguous, so a channels_last network hands back the usual NCHW tensor.
        return self.out(h.to(param_dtype(self.out))).contiguous()


class SuperResUNet(UNet):
    """The upsampler: the low-res image, bilinearly resized to x's size, is concatenated after x.

    ``in_channels`` is the image's channel count; the network itself sees twice as many.
    """

    def __init__(self, image_size: int, in_channels: int, *args, **kwargs):
        super().__init__(image_size, 2 * in_channels, *args, **kwargs)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        low_res: torch.Tensor,
        y: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [N, C, H, W] noisy high-res image, low_res [N, C, h, w] conditioning image."""
        up = F.interpolate(low_res, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return super().forward(torch.cat([x, up], dim=1), timesteps, y)
