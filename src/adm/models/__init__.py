"""ADM networks as plain ``nn.Module``s whose ``state_dict`` is key-for-key the released checkpoints'.

Depends on torch only. Call signatures are the original's: ``unet(x, timesteps, y=None)``,
``sr(x, timesteps, low_res, y=None)``, ``classifier(x, timesteps)``; timesteps may be fractional.

For inference, ``optimize_for_inference(model, channels_last=None, dtype=None)`` switches a
loaded model in place to the fast layout (channels_last on the CPU), to direct reduced-precision
GroupNorm and, with ``dtype=torch.bfloat16`` / ``torch.float16``, to a reduced-precision trunk that
needs no autocast (in bf16 on the CPU also Winograd convolutions, ``adm.models.winograd``). Run the diffusion model under ``torch.inference_mode()``; the guidance
classifier needs autograd for its input gradient. See ``docs/performance.md`` for what each buys.
"""

from __future__ import annotations

from torch import nn

from .attention import AttentionBlock, AttentionOrder, AttentionPool2d
from .classifier import NoisyClassifier
from .inference import optimize_for_inference
from .layers import GroupNorm32, ResBlock, TimestepBlock, TimestepSequential, timestep_embedding
from .unet import SuperResUNet, UNet


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (the figure the checkpoint tables quote)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


__all__ = [
    "AttentionBlock",
    "AttentionOrder",
    "AttentionPool2d",
    "GroupNorm32",
    "NoisyClassifier",
    "ResBlock",
    "SuperResUNet",
    "TimestepBlock",
    "TimestepSequential",
    "UNet",
    "count_parameters",
    "optimize_for_inference",
    "timestep_embedding",
]
