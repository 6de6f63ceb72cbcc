"""The continuous noise levels of EDM and consistency models (consistency_models' ``KarrasDenoiser``).

These networks were trained on every σ in [σ_min, σ_max] (0.002 to 80 for the released models),
not on a table of timesteps, and are told σ as 250·ln σ (``1000 * 0.25 * log(sigma + 1e-44)``).
The state a sampler carries is x = x_0 + σ·ε itself (variance exploding), and pure noise at the top
is σ_max·z.

Network time τ ∈ [0, T − 1] (T = ``num_steps``, a resolution, not a training table) runs along
Karras et al.'s ρ-ramp, σ(τ)^(1/ρ) linear in τ: that is what ``--spacing time`` means here (the EDM
grid), what an edit's strength S picks (τ = S·(T − 1)) and what a guidance interval's fractions
are read in. The schedule has no discrete chain: ``ddpm`` and ``ddim`` are refused when the plan is
made (``adm.sampling.settings``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from adm.core.errors import UsageError
from adm.diffusion.continuous import NoiseSchedule

Tensor = torch.Tensor


@dataclass(frozen=True)
class KarrasSchedule:
    """σ ∈ [σ_min, σ_max] with network time 250·ln σ."""

    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    num_steps: int = 1000
    discrete: ClassVar[bool] = False
    rescale_timesteps: ClassVar[bool] = False

    def __post_init__(self):
        if not 0 < self.sigma_min < self.sigma_max:
            raise UsageError(f"sigma_min {self.sigma_min:g} and sigma_max {self.sigma_max:g} must satisfy 0 < min < max")

    @property
    def sigma_start(self) -> float:
        return self.sigma_max

    @property
    def start_timestep(self) -> int:
        return self.num_steps - 1

    @property
    def log_sigma_min(self) -> Tensor:
        return torch.tensor(self.sigma_min, dtype=torch.float64).log()

    def _ends(self) -> tuple[float, float]:
        return self.sigma_min ** (1 / self.rho), self.sigma_max ** (1 / self.rho)

    def sigma_at(self, tau: Tensor | float) -> Tensor:
        """σ at network times τ ∈ [0, T − 1] on the ρ-ramp (float64)."""
        lo, hi = self._ends()
        ramp = torch.as_tensor(tau, dtype=torch.float64).clamp(0, self.num_steps - 1) / (self.num_steps - 1)
        return (lo + ramp * (hi - lo)) ** self.rho

    def tau_at(self, sigma: Tensor | float) -> Tensor:
        """The network time of noise levels σ (the inverse of ``sigma_at``), float64."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        if bool((sigma <= 0).any()):
            raise UsageError("noise levels must be positive to have a network time (σ = 0 is the clean image)")
        lo, hi = self._ends()
        ramp = (sigma.clamp(self.sigma_min, self.sigma_max) ** (1 / self.rho) - lo) / (hi - lo)
        return ramp * (self.num_steps - 1)

    @staticmethod
    def network_time(sigma: Tensor) -> Tensor:
        """250·ln σ: consistency_models' ``rescaled_t`` (float64)."""
        return 250.0 * torch.log(torch.as_tensor(sigma, dtype=torch.float64) + 1e-44)

    def time_fraction(self, time: Tensor) -> Tensor:
        """τ/T of the network's input 250·ln σ: the fraction of the ρ-ramp (guidance intervals)."""
        sigma = torch.exp(torch.as_tensor(time, dtype=torch.float64).cpu() / 250.0)
        return self.tau_at(sigma) / self.num_steps

    @staticmethod
    def state_scale(sigma: Tensor | float) -> Tensor:
        """The state is x_0 + σ·ε itself."""
        return torch.ones_like(torch.as_tensor(sigma, dtype=torch.float64))

    @staticmethod
    def prior_std(sigma: float) -> float:
        """Pure noise at level σ is σ·z (consistency_models' ``x_T = randn * sigma_max``)."""
        return float(sigma)

    def chain(self, timesteps: list[int]):
        raise UsageError("this model has continuous noise levels and no discrete chain (ddpm and ddim need one)")

    def describe(self) -> str:
        return f"continuous sigma {self.sigma_min:g}..{self.sigma_max:g}"


# What a sampler walks: a VP model's discrete training schedule, or an EDM model's σ range.
Schedule = NoiseSchedule | KarrasSchedule
