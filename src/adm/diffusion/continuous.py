"""The continuous-time view of a network's discrete training schedule.

ADM networks were trained on T integer timesteps, but they accept any real timestep τ in
[0, T − 1] (the sinusoidal embedding is defined everywhere). Fast solvers need exactly that: a
noise level σ anywhere on the schedule and the network time that goes with it.

Notation. ADM writes x_t = √ᾱ_τ·x_0 + √(1 − ᾱ_τ)·ε (variance preserving). Dividing by √ᾱ gives
the variance-exploding form x = x_0 + σ·ε with σ = √((1 − ᾱ)/ᾱ); the log-SNR is λ = −log σ. The
solvers in ``adm.sampling`` work in that form (the DPM-Solver++ and Karras et al. formulas are
scale-free, so this loses nothing), while networks and callers see ADM's x_t.

Between integer timesteps, log σ is interpolated linearly in τ (k-diffusion's choice for ADM
models). The table is used whole for that mapping: every σ of the training schedule keeps the
timestep the network was trained with (DPM-Solver's discrete schedule instead drops the cosine
schedule's entries below λ = −5.1 and stretches the remaining timestep labels by 1000/996).

Where sampling *starts* is a separate fact, ``NoiseSchedule.start_timestep``: the highest
integer timestep whose λ is at least ``START_LOG_SNR`` (DPM-Solver's −5.1). On a linear schedule
that is the whole table (its λ ends at −5.06); on the 1000-step cosine schedule it is t = 995
(σ ≈ 160), not t = 999: there the last β is clipped to 0.999, σ jumps from 642 to 20291, and an
x_0 estimate x − σ·ε̂ multiplies every error of ε̂ by 20291 (docs/sampling.md measures it). Pure
noise is as good a start at t = 995 (√ᾱ ≈ 0.006, the linear schedule's own top) and the label
stays an integer the network was trained on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import torch

from adm.core.errors import UsageError
from adm.diffusion.process import GaussianProcess
from adm.diffusion.schedules import beta_schedule, respace

Tensor = torch.Tensor
START_LOG_SNR = -5.1  # sampling starts at the highest timestep whose λ = −log σ is at least this


@dataclass(frozen=True, eq=False)
class NoiseSchedule:
    """A network's training schedule: betas over T integer timesteps, seen in continuous time.

    ``betas`` are the schedule's own (float64, un-respaced) values, so that any sub-chain built
    by ``chain`` is bit-for-bit what ``GaussianProcess.create`` (and the original's
    ``SpacedDiffusion``) would build. ``rescale_timesteps`` feeds the network τ·1000/T, as
    improved-diffusion checkpoints trained with T = 4000 expect.
    """

    betas: Tensor
    rescale_timesteps: bool = False
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    discrete: ClassVar[bool] = True  # has the original's chain of integer timesteps

    def __post_init__(self):
        betas = torch.as_tensor(self.betas, dtype=torch.float64, device="cpu")
        if betas.ndim != 1 or betas.numel() < 2:
            raise UsageError("a noise schedule needs at least 2 steps")
        object.__setattr__(self, "betas", betas)

    @classmethod
    def create(cls, name: str, num_steps: int, rescale_timesteps: bool = False) -> NoiseSchedule:
        """A named schedule (``linear``, ``cosine``) of ``num_steps`` training timesteps."""
        return cls(beta_schedule(name, num_steps), rescale_timesteps)

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    @cached_property
    def alphas_cumprod(self) -> Tensor:
        return torch.cumprod(1.0 - self.betas, dim=0)

    @cached_property
    def log_sigmas(self) -> Tensor:
        """log σ_τ at τ = 0 … T − 1 (strictly increasing), float64."""
        abar = self.alphas_cumprod
        return 0.5 * (torch.log1p(-abar) - torch.log(abar))

    @property
    def sigma_min(self) -> float:
        return math.exp(float(self.log_sigmas[0]))

    @property
    def log_sigma_min(self) -> Tensor:
        return self.log_sigmas[0]

    @property
    def sigma_max(self) -> float:
        return math.exp(float(self.log_sigmas[-1]))

    @cached_property
    def start_timestep(self) -> int:
        """Where sampling from pure noise starts: the highest integer timestep with λ ≥ ``START_LOG_SNR``.

        The last timestep of a linear schedule; t = 995 of a 1000-step cosine schedule, whose
        top entries (λ down to −9.9) only amplify the network's errors. Grids start here and
        edits at strength 1 do; the original's respaced chains (``ddpm``/``ddim``) keep their
        own top.
        """
        usable = int((-self.log_sigmas >= START_LOG_SNR).sum())  # λ decreases with t: a prefix
        return usable - 1 if usable else self.num_steps - 1

    @property
    def sigma_start(self) -> float:
        """σ at ``start_timestep``: the first level of every solver's grid."""
        return math.exp(float(self.log_sigmas[self.start_timestep]))

    def sigma_at(self, tau: Tensor | float) -> Tensor:
        """σ at network times τ ∈ [0, T − 1] (float64, same shape as ``tau``)."""
        tau = torch.as_tensor(tau, dtype=torch.float64).clamp(0, self.num_steps - 1)
        low = tau.floor().long().clamp(max=self.num_steps - 2)
        frac = tau - low
        log_sigma = torch.lerp(self.log_sigmas[low], self.log_sigmas[low + 1], frac)
        return log_sigma.exp()

    def tau_at(self, sigma: Tensor | float) -> Tensor:
        """The network time of noise levels σ (the inverse of ``sigma_at``), float64.

        A σ taken from the table itself maps back to its integer timestep exactly (the fraction
        is computed as 0.0), which is what lets the original's discrete samplers run on grids.
        """
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        if bool((sigma <= 0).any()):
            raise UsageError("noise levels must be positive to have a network time (σ = 0 is the clean image)")
        log_sigma = sigma.log().clamp(self.log_sigmas[0], self.log_sigmas[-1])
        low = (torch.searchsorted(self.log_sigmas, log_sigma, right=True) - 1).clamp(0, self.num_steps - 2)
        lo, hi = self.log_sigmas[low], self.log_sigmas[low + 1]
        return low.to(torch.float64) + (log_sigma - lo) / (hi - lo)

    def model_timesteps(self, tau: Tensor) -> Tensor:
        """What the network is conditioned on at network time τ (rescaled to [0, 1000) if asked)."""
        return tau * (1000.0 / self.num_steps) if self.rescale_timesteps else tau

    def time_fraction(self, time: Tensor) -> Tensor:
        """τ/T of the network's timestep input ``time`` (what guidance intervals are read in), float64."""
        tau = torch.as_tensor(time, dtype=torch.float64)
        if self.rescale_timesteps:
            tau = tau * (self.num_steps / 1000.0)
        return tau / self.num_steps

    def network_time(self, sigma: Tensor) -> Tensor:
        """The timestep input of a network trained on this schedule at noise levels σ (float64)."""
        return self.model_timesteps(self.tau_at(sigma))

    @staticmethod
    def state_scale(sigma: Tensor | float) -> Tensor:
        """A sampler's state is ADM's x_t = √ᾱ·(x_0 + σ·ε): the factor √ᾱ = 1/√(1 + σ²)."""
        return vp_scale(sigma)

    @staticmethod
    def prior_std(sigma: float) -> float:
        """The standard deviation of pure noise at the grid's top, in the state's scaling: the
        original starts from x_T = z (√(1 − ᾱ_T) ≈ 1)."""
        return 1.0

    def chain(self, timesteps: list[int]) -> GaussianProcess:
        """The discrete chain walking only ``timesteps`` (the original's respacing, exactly)."""
        key = tuple(timesteps)
        if key not in self._cache:
            betas, timestep_map = respace(self.betas, timesteps)
            self._cache[key] = GaussianProcess(betas, timestep_map, self.num_steps, self.rescale_timesteps)
        return self._cache[key]


def vp_scale(sigma: Tensor) -> Tensor:
    """√ᾱ = 1/√(1 + σ²): multiply a variance-exploding x by it to get ADM's x_t."""
    return torch.rsqrt(1.0 + torch.as_tensor(sigma, dtype=torch.float64) ** 2)


def per_sample(value: Tensor, x: Tensor) -> Tensor:
    """A float64 scalar or [B] coefficient as float32, shaped to broadcast over x."""
    value = torch.as_tensor(value, dtype=torch.float64)
    if value.ndim == 0:
        value = value.expand(x.shape[0])
    return value.to(device=x.device, dtype=x.dtype).view(-1, *([1] * (x.ndim - 1)))


@dataclass(frozen=True, eq=False)
class BoundedSchedule(NoiseSchedule):
    """A VP network's schedule read between ``low`` and ``high`` only: a consistency student of a
    guided-/improved-diffusion network (``adm distill``).

    The student keeps its teacher's timesteps (network time, state scaling), but its consistency
    function is anchored at ``low`` (the σ_min where f(x, σ) = x) and was distilled from ``high``
    down: grids run from ``high`` to ``low``, so ``cm`` starts where the student learned to. It has
    no discrete chain (a consistency model is not a Gaussian chain): ``ddpm`` and ``ddim`` are
    refused when the plan is made.
    """

    low: float = 0.0
    high: float = math.inf
    discrete: ClassVar[bool] = False

    def __post_init__(self):
        super().__post_init__()
        if not 0 < self.low < self.high:
            raise UsageError(f"a consistency model's sigma_min {self.low:g} and sigma_max {self.high:g} "
                             "must satisfy 0 < min < max")

    @property
    def sigma_min(self) -> float:
        return self.low

    @property
    def log_sigma_min(self) -> Tensor:
        return torch.tensor(self.low, dtype=torch.float64).log()

    @property
    def sigma_start(self) -> float:
        """``high``, or the table's own start when that is lower."""
        table_start = NoiseSchedule.start_timestep.func(self)  # the VP schedule's own (not ours)
        return min(self.high, math.exp(float(self.log_sigmas[table_start])))

    @cached_property
    def start_timestep(self) -> int:
        """The highest integer timestep at or below ``sigma_start``."""
        return int(self.tau_at(self.sigma_start).floor())

    def chain(self, timesteps: list[int]) -> GaussianProcess:
        raise UsageError("a consistency model has no discrete Gaussian chain (ddpm and ddim need one)")

    def describe(self) -> str:
        return f"consistency model on a {self.num_steps}-step VP schedule, sigma {self.low:g}..{self.sigma_start:g}"
