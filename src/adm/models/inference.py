"""Opt-in inference settings for the ADM networks, applied in place to a loaded model.

The networks are correct and reasonably fast as built (attention already uses the fused SDPA
kernels). What is left is a choice of layout and precision that only pays off for inference, so
it is a separate call rather than a constructor flag; ``benchmarks/forward_latency.py`` measures
what each part buys.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import AttentionBlock
from .blocked_attention import BlockedAttentionBlock
from .layers import GroupNorm32
from .winograd import WinogradConv2d, winograd_eligible

REDUCED_DTYPES = (torch.bfloat16, torch.float16)
TRUNK_PARTS = ("input_blocks", "middle_block", "output_blocks")


def trunk(module: nn.Module) -> list[nn.Module]:
    """The encoder/decoder blocks of a UNet or classifier: what the original's use_fp16 converts.

    The timestep/class embeddings and the output head stay outside it.
    """
    parts = [getattr(module, name) for name in TRUNK_PARTS if hasattr(module, name)]
    if not parts:
        raise TypeError(f"{type(module).__name__} is not an ADM network (no input_blocks)")
    return parts


WIDE_CHANNELS = 128  # base width from which channels_last pays off on the CPU (see optimize_for_inference)


def optimize_for_inference(
    module: nn.Module,
    *,
    channels_last: bool | None = None,
    dtype: torch.dtype | None = None,
    winograd: bool | None = None,
    blocked_attention: bool | None = None,
) -> nn.Module:
    """Make a UNet / SuperResUNet / NoisyClassifier faster to evaluate; returns ``module`` itself.

    The call signatures, ``state_dict`` keys and shapes and the output layout (NCHW) are unchanged.

    * GroupNorm normalises reduced-precision activations directly on the CPU (its kernel keeps
      float32 statistics) instead of copying them to float32 and back (``GroupNorm32.upcast``).
    * ``channels_last``: store the conv weights NHWC, so convolutions, GroupNorm, the elementwise
      ops and attention's token-major views run without layout conversions. ``None`` means on for
      a network of at least ``WIDE_CHANNELS`` base channels on the CPU (every released ADM: the
      ImageNet-64 forward is faster so) and off otherwise: the 32-channel ``digits`` U-Net ran its
      bf16 forward 2.5x slower channels_last (370 vs 145 ms at batch 50), and GPUs are not measured.
    * ``dtype`` (``torch.bfloat16`` / ``torch.float16``): cast the trunk's convolutions, which
      hold nearly all the weights, as the original's ``convert_to_fp16`` does; the embeddings,
      GroupNorm parameters and the output head stay float32. The forward then runs in that dtype
      without autocast and without re-casting every weight on every call. The cast rounds the
      weights in place; reload them to go back.
    * ``winograd``: run the trunk's 3x3 convolutions of 256+ channels through Winograd F(2x2, 3x3)
      (``adm.models.winograd``) for bf16 inference on the CPU: faster than oneDNN's bf16
      convolution at the 32x32 and smaller maps, at about twice its rounding error
      (docs/performance.md). The transformed filters are computed here, once; load new weights
      with ``load_state_dict`` (which recomputes them) or convert again.
    * ``blocked_attention``: run the trunk's attention as GEMM, softmax, GEMM over blocks of query
      rows (``adm.models.blocked_attention``) for bf16 inference on the CPU, where that beats
      CPU flash attention, with the original autocast's precision.

    ``None`` means on for ``dtype=torch.bfloat16`` on the CPU, for both. With autograd (the
    guidance classifier), in float32 or on another device the replaced modules run as before.

    Channels_last parameters are not contiguous: save a ``state_dict`` only after making its
    tensors contiguous (safetensors refuses otherwise). For sampling, also run the diffusion model
    under ``torch.inference_mode()``; the classifier of guidance needs autograd for its input
    gradient, so it runs with ``torch.enable_grad()`` as before (its weights need no gradient).
    """
    parts = trunk(module)
    if dtype is not None and dtype not in REDUCED_DTYPES + (torch.float32,):
        raise ValueError(f"dtype must be one of torch.float32, {REDUCED_DTYPES}, got {dtype}")
    on_cpu = next(module.parameters()).device.type == "cpu"
    if channels_last is None:
        first = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
        channels_last = on_cpu and first.out_channels >= WIDE_CHANNELS
    for norm in module.modules():
        if isinstance(norm, GroupNorm32):
            norm.upcast = False
    if dtype is not None:
        for part in parts:
            for conv in part.modules():
                if isinstance(conv, (nn.Conv1d, nn.Conv2d)):
                    conv.to(dtype)
    cpu_bf16 = dtype is torch.bfloat16 and on_cpu  # where the CPU kernels below pay off
    if winograd is None:
        winograd = cpu_bf16
    if blocked_attention is None:
        blocked_attention = cpu_bf16
    if winograd:
        _replace(parts, winograd_eligible, WinogradConv2d.from_conv)
    if blocked_attention:
        _replace(parts, lambda m: type(m) is AttentionBlock, BlockedAttentionBlock.from_block)
    if channels_last:
        module.to(memory_format=torch.channels_last)  # moves only the 4-D (conv) weights
    return module


def _replace(parts: list[nn.Module], eligible, convert) -> None:
    """Swap every submodule of ``parts`` that is ``eligible`` for ``convert(submodule)``."""
    for part in parts:
        for parent in list(part.modules()):
            for name, child in list(parent.named_children()):
                if eligible(child):
                    setattr(parent, name, convert(child))
