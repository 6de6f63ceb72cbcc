"""Time grids: where a sampler evaluates the network, as plain data.

Every function returns a float64 tensor of noise levels σ, strictly decreasing, with a trailing
0 (the clean image), as k-diffusion's ``get_sigmas_*``. A sampler never learns which function
built its grid. ``n`` is the number of non-zero levels, i.e. of network evaluations for a
one-evaluation-per-step sampler; ``sigma_max`` lets a grid start part-way down the schedule
(image-to-image editing starts from a noised real image).

Grids start at the schedule's ``sigma_start`` (``NoiseSchedule.start_timestep``), never above:
on a cosine schedule the levels above it only amplify the network's errors. The one exception
is the original's respaced chain sampled from pure noise (``ddpm``, ``ddim`` without a cap),
which keeps its own levels so that it stays bit-exact.

* ``respaced_grid``: the original's respaced chain (``"250"``, ``"ddim25"``, ``"10,15,20"``),
  levels exactly at the kept integer timesteps — what ``ddpm`` and ``ddim`` walk;
* ``uniform_time_grid``: equal steps in network time τ (DPM-Solver's "time_uniform");
* ``uniform_logsnr_grid``: equal steps in λ = −log σ (DPM-Solver's "logSNR");
* ``karras_grid``: Karras et al.'s ρ = 7 spacing, dense at low noise;
* ``karras_index_grid``: chosen levels of a Karras grid, as consistency models are sampled
  (consistency_models' ``--ts 0,22,39`` of ``--steps 40``); ``consistency_grid`` reads ``--steps``.
"""

from __future__ import annotations

import torch

from adm.core.errors import UsageError
from adm.diffusion.continuous import NoiseSchedule
from adm.diffusion.schedules import space_timesteps
from adm.diffusion.spacings import SPACINGS

Tensor = torch.Tensor
KARRAS_RHO = 7.0


def _with_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas.to(torch.float64), sigmas.new_zeros(1, dtype=torch.float64)])


def _check_count(n: int) -> None:
    if n < 1:
        raise UsageError(f"a sampler needs at least 1 step, got {n}")


def _top(schedule: NoiseSchedule, sigma_max: float | None) -> float:
    """The grid's first level: ``sigma_max`` (inside the schedule) capped at the schedule's start."""
    if sigma_max is None:
        return schedule.sigma_start
    if not schedule.sigma_min <= sigma_max <= schedule.sigma_max * (1 + 1e-12):
        raise UsageError(f"a grid must start inside the schedule's noise levels, got sigma {sigma_max:g}")
    return min(sigma_max, schedule.sigma_start)


def respaced_timesteps(schedule: NoiseSchedule, spec: str, max_timestep: int | None = None) -> list[int]:
    """The integer timesteps a respacing spec keeps, ascending.

    Without ``max_timestep`` this is the original's chain, top included. A cap (an edit's
    strength) keeps those at or below it and at or below the schedule's start: an edit at
    strength 1 on a cosine schedule starts at the chain's highest level under t = 995, where the
    DDIM inversion still reconstructs (at t = 999, √ᾱ ≈ 5e-5, it returns noise).
    """
    kept = space_timesteps(schedule.num_steps, spec)
    if max_timestep is not None:
        cap = min(max_timestep, schedule.start_timestep)
        kept = [t for t in kept if t <= cap]
    if not kept:
        raise UsageError(f"respacing {spec!r} keeps no timestep at or below {max_timestep}")
    return kept


def respaced_grid(schedule: NoiseSchedule, spec: str, max_timestep: int | None = None) -> Tensor:
    """σ at the respaced chain's timesteps, highest first, then 0."""
    kept = respaced_timesteps(schedule, spec, max_timestep)
    sigmas = schedule.log_sigmas[torch.tensor(kept[::-1])].exp()
    return _with_zero(sigmas)


def uniform_time_grid(schedule: NoiseSchedule, n: int, sigma_max: float | None = None) -> Tensor:
    _check_count(n)
    top = float(schedule.tau_at(_top(schedule, sigma_max)))
    taus = torch.linspace(top, 0.0, n, dtype=torch.float64) if n > 1 else torch.tensor([top], dtype=torch.float64)
    return _with_zero(schedule.sigma_at(taus))


def uniform_logsnr_grid(schedule: NoiseSchedule, n: int, sigma_max: float | None = None) -> Tensor:
    _check_count(n)
    hi = torch.tensor(_top(schedule, sigma_max), dtype=torch.float64).log()
    lo = schedule.log_sigma_min
    log_sigmas = torch.linspace(float(hi), float(lo), n, dtype=torch.float64) if n > 1 else hi.view(1)
    return _with_zero(log_sigmas.exp())


def karras_grid(schedule: NoiseSchedule, n: int, sigma_max: float | None = None, rho: float | None = None) -> Tensor:
    """Karras et al.'s ρ-spaced levels; ρ is an EDM model's own (``KarrasSchedule.rho``), else 7."""
    _check_count(n)
    rho = rho or getattr(schedule, "rho", KARRAS_RHO)
    hi = _top(schedule, sigma_max) ** (1 / rho)
    lo = schedule.sigma_min ** (1 / rho)
    ramp = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.zeros(1, dtype=torch.float64)
    return _with_zero((hi + ramp * (lo - hi)) ** rho)


def karras_index_grid(schedule, indices: list[int], n: int, sigma_max: float | None = None) -> Tensor:
    """The levels at ``indices`` of an ``n``-level Karras grid (index 0 = the top, n − 1 = σ_min).

    Index n − 1 (σ_min, where a consistency model is the identity) is the clean image: it becomes
    the grid's trailing 0, so it costs no evaluation. A ``sigma_max`` below the top (an edit)
    starts there and keeps the levels under it.
    """
    if n < 2:
        raise UsageError(f"a Karras grid needs at least 2 levels, got {n}")
    if not indices or any(b <= a for a, b in zip(indices, indices[1:], strict=False)):
        raise UsageError(f"step indices {','.join(map(str, indices))} must be increasing", "e.g. --steps 0,22,39")
    if indices[0] < 0 or indices[-1] > n - 1:
        raise UsageError(f"step indices must lie in 0..{n - 1} (the Karras grid has {n} levels)",
                         "change them or the sampler option karras_steps")
    levels = karras_grid(schedule, n)[:-1]
    chosen = [float(levels[i]) for i in indices if i < n - 1]
    if sigma_max is not None:
        top = _top(schedule, sigma_max)
        chosen = [top] + [s for s in chosen if s < top]
    return _with_zero(torch.tensor(chosen, dtype=torch.float64))


def consistency_grid(schedule, steps: str, n: int, sigma_max: float | None = None) -> Tensor:
    """``--steps`` of the consistency sampler: a comma list of indices into an ``n``-level Karras
    grid (consistency_models' ``--ts``), or a number K of evaluations: the top alone for K = 1,
    else K indices spread evenly over the grid."""
    text = steps.strip()
    if text.isdigit():
        count = int(text)
        _check_count(count)
        if count >= n:
            raise UsageError(f"--steps {count} needs a Karras grid of more than {n} levels",
                             f"raise the sampler option karras_steps above {count}")
        indices = [round(k * (n - 1) / count) for k in range(count)]
    else:
        try:
            indices = [int(part) for part in text.split(",") if part.strip()]
        except ValueError:
            raise UsageError(f"--steps {steps!r}: the consistency sampler takes a number of steps or the "
                             "reference's index list", "e.g. --steps 1 or --steps 0,22,39") from None
    return karras_index_grid(schedule, indices, n, sigma_max)


def make_grid(
    schedule: NoiseSchedule, spacing: str, steps: str, *, max_timestep: float | None = None
) -> Tensor:
    """The grid named by ``spacing`` (one of ``SPACINGS``) for ``steps``.

    ``steps`` is a respacing spec for ``respaced`` and a count of levels for the others.
    ``max_timestep`` (network time) caps the start of the grid; the schedule's start always does,
    except for an uncapped respaced chain (the original's, exactly).
    """
    if spacing == "respaced":
        cap = None if max_timestep is None else int(max_timestep)
        return respaced_grid(schedule, steps, cap)
    builders = {"time": uniform_time_grid, "logsnr": uniform_logsnr_grid, "karras": karras_grid}
    if spacing not in builders:
        raise UsageError(f"unknown spacing {spacing!r}", f"choose one of {', '.join(SPACINGS)}")
    try:
        n = int(steps)
    except ValueError:
        raise UsageError(
            f"--steps {steps!r} is not a number of steps for --spacing {spacing}",
            "respacing strings such as ddim25 need --spacing respaced",
        ) from None
    top = None if max_timestep is None else float(schedule.sigma_at(max_timestep))
    return builders[spacing](schedule, n, top)
