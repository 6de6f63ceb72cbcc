"""The Gaussian diffusion process as a frozen value object.

``GaussianProcess`` holds the (possibly respaced) betas and the map from chain index to the
timestep the network was trained with. Every coefficient is derived once, in float64 on the
CPU with guided-diffusion's operation order, and cast to float32 only when extracted for a batch
(``extract``), which is what the original's ``_extract_into_tensor`` does.

Notation (DDPM): alpha_t = 1 − beta_t, alpha_bar_t = prod_{s<=t} alpha_s.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cached_property

import torch

from adm.core.errors import UsageError
from adm.diffusion.schedules import beta_schedule, respace, space_timesteps


class ModelMeanType(enum.Enum):
    """What the network's first C output channels predict."""

    PREVIOUS_X = "previous_x"  # the posterior mean mu(x_t, x_0) directly
    START_X = "x0"  # x_0
    EPSILON = "epsilon"  # the noise eps in x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps
    VELOCITY = "v"  # v = sqrt(abar) eps - sqrt(1 - abar) x_0 (an extension: not in the original)


class ModelVarType(enum.Enum):
    """How the reverse-step variance is obtained."""

    LEARNED = "learned"  # extra C channels are log sigma^2
    FIXED_SMALL = "fixed_small"  # the posterior variance beta~_t
    FIXED_LARGE = "fixed_large"  # beta_t (beta~_1 at t = 0)
    LEARNED_RANGE = "learned_range"  # extra C channels v in [-1, 1]: log beta~ .. log beta


class LossType(enum.Enum):
    MSE = "mse"  # L_simple (+ L_vlb for the variance when it is learned)
    RESCALED_MSE = "rescaled_mse"  # as MSE, vb term scaled by T/1000
    KL = "kl"  # the variational bound
    RESCALED_KL = "rescaled_kl"  # the variational bound times T

    def is_vb(self) -> bool:
        return self in (LossType.KL, LossType.RESCALED_KL)


# Derived float64 arrays, all of shape [num_steps].
ARRAY_NAMES = (
    "betas",
    "alphas_cumprod",
    "alphas_cumprod_prev",
    "alphas_cumprod_next",
    "sqrt_alphas_cumprod",
    "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod",
    "sqrt_recip_alphas_cumprod",
    "sqrt_recipm1_alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
)
# Further per-step constants the formulas extract (float64 before the cast, like the original).
_EXTRA_NAMES = (
    "one_minus_alphas_cumprod",
    "log_betas",
    "fixed_large_variance",
    "fixed_large_log_variance",
    "recip_posterior_mean_coef1",
    "posterior_mean_coef2_over_coef1",
)


@dataclass(frozen=True, eq=False)
class GaussianProcess:
    """A discrete Gaussian diffusion chain of ``num_steps`` steps.

    ``betas`` (float64) are those of the chain actually walked (respaced or not);
    ``timestep_map[k]`` (int64) is the original timestep of chain index k, i.e. what the network
    is conditioned on; ``original_num_steps`` is the T the network was trained with, used when
    ``rescale_timesteps`` feeds it float timesteps in [0, 1000).
    """

    betas: torch.Tensor
    timestep_map: torch.Tensor
    original_num_steps: int
    rescale_timesteps: bool = False
    _on_device: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        device = self.betas.device if isinstance(self.betas, torch.Tensor) else torch.device("cpu")
        # Computed where the betas live, even inside a caller's ``with torch.device("meta")``.
        with torch.device(device):
            self._validate_and_derive()

    def _validate_and_derive(self) -> None:
        betas = torch.as_tensor(self.betas, dtype=torch.float64)
        tmap = torch.as_tensor(self.timestep_map, dtype=torch.int64)
        if betas.ndim != 1 or betas.numel() == 0:
            raise UsageError(f"betas must be a non-empty 1-D array, got shape {tuple(betas.shape)}")
        if betas.numel() < 2:  # the clipped posterior log-variance borrows step 1's value
            raise UsageError("a diffusion chain needs at least 2 steps", "respace to 2 or more steps")
        if not bool(((betas > 0) & (betas <= 1)).all()):
            raise UsageError("betas must lie in (0, 1]")
        if tmap.shape != betas.shape:
            raise UsageError("timestep_map must have one entry per beta")
        object.__setattr__(self, "betas", betas)
        object.__setattr__(self, "timestep_map", tmap.to(betas.device))
        if betas.device.type == "cpu":
            for name in ARRAY_NAMES[1:] + _EXTRA_NAMES:  # cheap (T floats each); fixes them on the CPU
                getattr(self, name)

    @classmethod
    def create(
        cls,
        schedule: str = "linear",
        num_steps: int = 1000,
        respacing: str | list[int] = "",
        rescale_timesteps: bool = False,
    ) -> GaussianProcess:
        """The process ``create_gaussian_diffusion`` builds: a schedule, always respaced.

        Respacing with every step kept still recomputes the betas (as the original's
        ``SpacedDiffusion`` does), so the betas equal the original's bit for bit.
        """
        betas = beta_schedule(schedule, num_steps)
        new_betas, timestep_map = respace(betas, space_timesteps(num_steps, respacing))
        return cls(new_betas, timestep_map, num_steps, rescale_timesteps)

    @classmethod
    def from_betas(cls, betas: torch.Tensor, rescale_timesteps: bool = False) -> GaussianProcess:
        """An un-respaced process (identity timestep map), the original's plain GaussianDiffusion."""
        betas = torch.as_tensor(betas, dtype=torch.float64)
        n = betas.shape[0]
        return cls(betas, torch.arange(n, dtype=torch.int64), n, rescale_timesteps)

    @property
    def num_steps(self) -> int:
        return int(self.betas.shape[0])

    def model_timesteps(self, t: torch.Tensor) -> torch.Tensor:
        """The timesteps the network sees for chain indices ``t``.

        ``timestep_map[t]`` (int64); as float ``t' * 1000 / original_num_steps`` when
        ``rescale_timesteps`` (improved-diffusion checkpoints trained with T = 4000).
        """
        mapped = self.on(t.device).timestep_map[t]
        if self.rescale_timesteps:
            return mapped.float() * (1000.0 / self.original_num_steps)
        return mapped

    def on(self, device: torch.device | str) -> GaussianProcess:
        """This process with every array on ``device`` (cached: arrays are copied once).

        The derived arrays are computed on the CPU first and then moved, so a GPU process has the
        same float64 values as a CPU one.
        """
        device = torch.device(device)
        if self.betas.device == device:
            return self
        key = str(device)
        if key not in self._on_device:
            moved = GaussianProcess(
                self.betas.to(device),
                self.timestep_map.to(device),
                self.original_num_steps,
                self.rescale_timesteps,
            )
            for name in ARRAY_NAMES[1:] + _EXTRA_NAMES:
                moved.__dict__[name] = getattr(self, name).to(device)  # prefill cached_property
            self._on_device[key] = moved
        return self._on_device[key]

    # --- derived arrays (float64), same formulas and operation order as the original ---

    @cached_property
    def alphas(self) -> torch.Tensor:
        return 1.0 - self.betas

    @cached_property
    def alphas_cumprod(self) -> torch.Tensor:
        return torch.cumprod(self.alphas, dim=0)

    @cached_property
    def alphas_cumprod_prev(self) -> torch.Tensor:
        one = torch.ones(1, dtype=torch.float64, device=self.betas.device)
        return torch.cat([one, self.alphas_cumprod[:-1]])

    @cached_property
    def alphas_cumprod_next(self) -> torch.Tensor:
        zero = torch.zeros(1, dtype=torch.float64, device=self.betas.device)
        return torch.cat([self.alphas_cumprod[1:], zero])

    @cached_property
    def one_minus_alphas_cumprod(self) -> torch.Tensor:
        return 1.0 - self.alphas_cumprod

    @cached_property
    def sqrt_alphas_cumprod(self) -> torch.Tensor:
        return torch.sqrt(self.alphas_cumprod)

    @cached_property
    def sqrt_one_minus_alphas_cumprod(self) -> torch.Tensor:
        return torch.sqrt(1.0 - self.alphas_cumprod)

    @cached_property
    def log_one_minus_alphas_cumprod(self) -> torch.Tensor:
        return torch.log(1.0 - self.alphas_cumprod)

    @cached_property
    def sqrt_recip_alphas_cumprod(self) -> torch.Tensor:
        return torch.sqrt(1.0 / self.alphas_cumprod)

    @cached_property
    def sqrt_recipm1_alphas_cumprod(self) -> torch.Tensor:
        return torch.sqrt(1.0 / self.alphas_cumprod - 1)

    @cached_property
    def posterior_variance(self) -> torch.Tensor:
        """beta~_t = beta_t (1 − abar_{t−1}) / (1 − abar_t), the variance of q(x_{t−1} | x_t, x_0)."""
        return self.betas * (1.0 - self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_log_variance_clipped(self) -> torch.Tensor:
        """log beta~_t with beta~_0 (= 0) replaced by beta~_1 so the log stays finite."""
        pv = self.posterior_variance
        return torch.log(torch.cat([pv[1:2], pv[1:]]))

    @cached_property
    def posterior_mean_coef1(self) -> torch.Tensor:
        return self.betas * torch.sqrt(self.alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)

    @cached_property
    def posterior_mean_coef2(self) -> torch.Tensor:
        return (
            (1.0 - self.alphas_cumprod_prev) * torch.sqrt(self.alphas) / (1.0 - self.alphas_cumprod)
        )

    @cached_property
    def log_betas(self) -> torch.Tensor:
        return torch.log(self.betas)

    @cached_property
    def fixed_large_variance(self) -> torch.Tensor:
        """beta_t, except beta~_1 at t = 0 ("for a better decoder log-likelihood")."""
        return torch.cat([self.posterior_variance[1:2], self.betas[1:]])

    @cached_property
    def fixed_large_log_variance(self) -> torch.Tensor:
        return torch.log(self.fixed_large_variance)

    @cached_property
    def recip_posterior_mean_coef1(self) -> torch.Tensor:
        return 1.0 / self.posterior_mean_coef1

    @cached_property
    def posterior_mean_coef2_over_coef1(self) -> torch.Tensor:
        return self.posterior_mean_coef2 / self.posterior_mean_coef1


def extract(arr: torch.Tensor, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``arr[t]`` as float32, broadcast to ``x``'s shape (the original ``_extract_into_tensor``).

    Indexing happens in float64 and only the gathered values are cast, so the float32
    coefficients equal the original's. ``arr`` should already be on ``t``'s device (see
    ``GaussianProcess.on``); otherwise it is copied.
    """
    if arr.device != t.device:
        arr = arr.to(t.device)
    res = arr[t].float()
    return res.reshape(res.shape + (1,) * (x.ndim - res.ndim)).expand(x.shape)
