"""Running the networks for sampling: precision, layout, inference mode, optional compilation.

On the CPU a bf16 trunk with channels_last, Winograd convolutions and blocked attention
(``adm.models.optimize_for_inference``) is the fast path; fp32 runs as built. How fast, and at
what error, against the original's autocast is measured in docs/performance.md
(``benchmarks/forward_latency.py``).

* ``prepare`` converts a network once, in place, for the chosen precision: bf16/fp16 cast the
  trunk (no autocast needed), except fp16 on the CPU, which stays float32 under autocast (CPU
  fp16 kernels are slow or missing); ``compile`` wraps it in ``torch.compile``.
* ``network_call`` is how the samplers call it: float32 in, float32 out; the diffusion model runs
  under ``torch.inference_mode`` (nothing of its forward is kept for a backward pass), the guidance
  classifier with autograd for its input gradient (``inference=False``).
* ``default_precision`` is per device: fp16 on CUDA for models released with ``use_fp16`` (as
  the original samples them), else fp32. On the CPU bf16 is the fast choice where the CPU has
  native bf16 kernels (AVX-512 BF16 or AMX), but it is opt-in: in fp32 another
  batch size moves at most a handful of pixels by one level (docs/sampling.md, Reproducibility),
  in bf16 the rounding of every layer depends on the batch shape and the CPU's kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn

from adm.core.errors import UsageError

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def _check(precision: str) -> torch.dtype | None:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", "choose fp32, fp16 or bf16")
    return PRECISIONS[precision]


def _autocast_only(device: torch.device, dtype: torch.dtype | None) -> bool:
    return dtype is torch.float16 and device.type == "cpu"


def prepare(module: nn.Module, precision: str, *, compile: bool = False, gradients: bool = False) -> nn.Module:
    """``module`` converted in place for ``precision`` (and compiled if asked); returns it.

    ``gradients``: the module is always differentiated (the guidance classifier), so the kernels
    that serve inference only (Winograd, blocked attention) are not swapped in: they would step
    aside at every call, and Winograd's transformed filters would hold memory for nothing.
    """
    from adm.models import optimize_for_inference

    dtype = _check(precision)
    device = next(module.parameters()).device
    if dtype is not None and not _autocast_only(device, dtype):
        inference_kernels = False if gradients else None  # None: the per-device default
        optimize_for_inference(module, dtype=dtype, winograd=inference_kernels, blocked_attention=inference_kernels)
    return torch.compile(module) if compile else module


def network_call(module: Callable, device: torch.device, precision: str, *, inference: bool = True) -> Callable:
    """``call(x, t, **kwargs)`` running ``module`` for the samplers, float32 out."""
    dtype = _check(precision)
    autocast = _autocast_only(device, dtype)

    def call(x, t, **kwargs):
        context = torch.autocast(device.type, dtype=dtype) if autocast else nullcontext()
        with (torch.inference_mode() if inference else nullcontext()), context:
            out = module(x, t, **kwargs)
        # a clone leaves inference mode: the samplers' arithmetic may then build on it freely
        return out.float().clone() if inference else out.float()

    return call


def precision_warnings(device: torch.device, precision: str) -> list[str]:
    """What to tell a user about a precision on a device before a long run.

    fp16 on a CPU is accepted (it runs under autocast) but is the slowest choice there, several
    times slower than fp32 (docs/performance.md): CPUs have no fast fp16 kernels; their reduced
    precision is bf16.
    """
    if _autocast_only(device, _check(precision)):
        return ["--precision fp16 on a CPU is several times slower than fp32 (CPUs have no fast fp16 kernels): "
                "use bf16, the CPU's reduced precision, or fp32"]
    return []


def default_precision(device: torch.device, use_fp16: bool) -> str:
    if device.type == "cuda":
        return "fp16" if use_fp16 else "fp32"
    return "fp32"
