"""Noise schedules and timestep respacing, as pure float64 functions.

The released ADM checkpoints were trained against these exact beta sequences, so a schedule,
once published, may be added to but never changed. Everything here is computed in float64 on
the CPU with the same operation order as guided-diffusion's numpy code, which keeps the derived
arrays equal to the original's to the last few ulps.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable

import torch

from adm.core.errors import UsageError

SCHEDULES = ("linear", "cosine")


def _on_cpu(func):
    """Schedule arrays are float64 CPU tensors even inside a ``with torch.device(...)`` block."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with torch.device("cpu"):
            return func(*args, **kwargs)

    return wrapper


@_on_cpu
def beta_schedule(name: str, num_steps: int) -> torch.Tensor:
    """The beta_t sequence of a named schedule (float64, shape [num_steps]).

    ``linear`` (Ho et al.) is scaled by 1000/T so that any T spans the same total noise;
    ``cosine`` (Nichol & Dhariwal) is defined through alpha_bar(t) = cos²((t + 0.008)/1.008 · π/2).
    """
    if num_steps < 1:
        raise UsageError(f"diffusion needs at least one step, got {num_steps}")
    if name == "linear":
        scale = 1000 / num_steps
        start, end = scale * 0.0001, scale * 0.02
        return _linspace(start, end, num_steps)
    if name == "cosine":
        return betas_for_alpha_bar(
            num_steps, lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        )
    raise UsageError(
        f"unknown noise schedule {name!r}", hint=f"choose one of {', '.join(SCHEDULES)}"
    )


def _linspace(start: float, end: float, num: int) -> torch.Tensor:
    """numpy.linspace's arithmetic (i·step + start, last point pinned to ``end``).

    torch.linspace fills the two halves from opposite ends, which differs from numpy in the
    last bit; the reference betas are numpy's.
    """
    if num == 1:
        return torch.tensor([start], dtype=torch.float64)
    step = (end - start) / (num - 1)
    values = torch.arange(num, dtype=torch.float64) * step + start
    values[-1] = end
    return values


def betas_for_alpha_bar(
    num_steps: int, alpha_bar: Callable[[float], float], max_beta: float = 0.999
) -> torch.Tensor:
    """Discretise a continuous alpha_bar(t), t in [0, 1], into betas.

    beta_i = 1 − alpha_bar((i+1)/T) / alpha_bar(i/T), capped at ``max_beta`` to avoid the
    singularity at t = 1 (the last cosine beta is exactly 0.999).
    """
    betas = [
        min(1 - alpha_bar((i + 1) / num_steps) / alpha_bar(i / num_steps), max_beta)
        for i in range(num_steps)
    ]
    return torch.tensor(betas, dtype=torch.float64)


def space_timesteps(num_steps: int, spec: str | Iterable[int]) -> list[int]:
    """The original timesteps kept by a respacing spec, sorted.

    * ``""`` keeps every step;
    * ``"ddimN"`` takes the smallest integer stride s with ``len(range(0, T, s)) == N``
      (so ``ddim25`` of 1000 is 0, 40, …, 960 and never includes T − 1);
    * ``"a,b,c"`` (or a list of ints) splits T into that many nearly equal sections (the first
      ``T % len`` one longer) and spaces ``count`` steps evenly inside each section, rounding
      with Python's ``round`` (banker's rounding) on a running float sum, exactly as
      guided-diffusion does.
    """
    if isinstance(spec, str):
        text = spec.strip()
        if not text:
            return list(range(num_steps))
        if text.startswith("ddim"):
            return _ddim_stride(num_steps, text)
        counts = _parse_counts(text)
    else:
        counts = [int(c) for c in spec]
    if not counts or any(c < 0 for c in counts) or sum(counts) == 0:
        raise UsageError(f"invalid timestep respacing {counts}: counts must be positive")

    size_per, extra = divmod(num_steps, len(counts))
    start, steps = 0, []
    for i, count in enumerate(counts):
        size = size_per + (1 if i < extra else 0)
        if count > size:
            raise UsageError(
                f"cannot respace a section of {size} steps into {count} steps",
                hint=f"respacing {spec!r} of {num_steps} steps",
            )
        stride = 1 if count <= 1 else (size - 1) / (count - 1)
        position = 0.0  # accumulated like the original, not k*stride: the rounding must match
        for _ in range(count):
            steps.append(start + round(position))
            position += stride
        start += size
    return sorted(set(steps))


def _ddim_stride(num_steps: int, spec: str) -> list[int]:
    try:
        wanted = int(spec[len("ddim") :])
    except ValueError:
        raise UsageError(f"invalid timestep respacing {spec!r}", hint="use e.g. 'ddim25'") from None
    for stride in range(1, num_steps):
        if len(range(0, num_steps, stride)) == wanted:
            return list(range(0, num_steps, stride))
    raise UsageError(
        f"cannot take exactly {wanted} steps of {num_steps} with an integer stride ({spec!r})",
        hint="pick another ddimN or use a plain count such as '250'",
    )


def _parse_counts(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(
            f"invalid timestep respacing {text!r}",
            hint="use '' (all steps), 'ddimN' or comma-separated counts such as '250' or '10,10,5'",
        ) from None


@_on_cpu
def respace(betas: torch.Tensor, use_timesteps: Iterable[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Shorten a chain to ``use_timesteps`` while keeping alpha_bar at the kept steps.

    For kept steps i_0 < i_1 < …, the new beta_k = 1 − alpha_bar[i_k] / alpha_bar[i_{k−1}]
    (with alpha_bar[i_{−1}] = 1). Returns ``(new_betas float64, timestep_map int64)`` where
    ``timestep_map[k] = i_k`` is what the network sees at the new index k. Even keeping every
    step changes the betas in their last bits, which is why the original (and adm) always
    respace.
    """
    betas = torch.as_tensor(betas, dtype=torch.float64).cpu()
    num_steps = betas.shape[0]
    kept = sorted(set(int(i) for i in use_timesteps))
    if not kept or kept[0] < 0 or kept[-1] >= num_steps:
        raise UsageError(f"respaced timesteps must be a non-empty subset of 0..{num_steps - 1}")
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    timestep_map = torch.tensor(kept, dtype=torch.int64)
    kept_cumprod = alphas_cumprod[timestep_map]
    previous = torch.cat([torch.ones(1, dtype=torch.float64), kept_cumprod[:-1]])
    return 1 - kept_cumprod / previous, timestep_map
