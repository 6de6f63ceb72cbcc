"""The model adapter: how a network's raw output becomes the x̂_0 estimate, for every parameterisation.

Every network of the ADM family computes ``F = network(c_in·x, time, **kwargs)`` and is read as

    x̂_0 = c_skip(σ)·x + c_out(σ)·F        with x = x_0 + σ·ε (the variance-exploding form)

(Karras et al. 2022, §5 and Table 1; k-diffusion's ``external.py`` wrappers are the same idea). What
differs between families is only the three coefficients, and, for the variance-preserving (VP)
models of guided- and improved-diffusion, the learned variance and the original's discrete chain.
One class per parameterisation says all of that, so adding one (``VelocityVP`` shows how) is one
class here and a line in ``adm.spec.factory``:

| adapter | c_skip | c_out | c_in | used by |
|---|---|---|---|---|
| ``EpsilonVP`` | 1 | −σ | 1/√(1+σ²) | guided-/improved-diffusion (ε, learned or fixed Σ) |
| ``StartXVP`` | 0 | 1 | 1/√(1+σ²) | ``--predict_xstart`` |
| ``VelocityVP`` | 1/(1+σ²) | −σ/√(1+σ²) | 1/√(1+σ²) | ``--predict_v`` (user models) |
| ``EDM`` | σd²/(σ²+σd²) | σ·σd/√(σ²+σd²) | 1/√(σ²+σd²) | consistency_models' EDM teachers |
| ``ConsistencyBoundary`` | σd²/((σ−σmin)²+σd²) | (σ−σmin)·σd/√(σ²+σd²) | as EDM | consistency models (f(x, σmin) = x) |
| ``ConsistencyOver`` | b + (1−b)·c_skip' | (1−b)·c_out' | c_in' | a VP network's consistency student (``adm distill``) |

(``ConsistencyOver``: b = σd²/((σ−σmin)²+σd²), the boundary's c_skip, over another adapter's
c_skip', c_out', c_in'.)

Where the network is told its noise level (a chain index, the rescaled 0–1000 index, 250·ln σ) is
the schedule's job (``Schedule.network_time``): an adapter never sees a timestep.

The VP adapters also read outputs on the original's discrete chain (``chain_prediction``,
``chain_target``) with guided-diffusion's float32 operation order, so ``ddpm``/``ddim``, the
``adm.compat`` diffusion object and the training losses stay bit-exact: those are the same
formulas as the continuous ones, evaluated from the (respaced) process's own coefficient tables.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from adm.core.errors import UsageError
from adm.diffusion.continuous import per_sample
from adm.diffusion.gaussian import (
    predict_xstart_from_eps,
    predict_xstart_from_xprev,
    q_posterior_mean_variance,
)
from adm.diffusion.process import GaussianProcess, ModelMeanType, ModelVarType, extract

Tensor = torch.Tensor
Scalings = tuple[Tensor, Tensor, Tensor]  # (c_skip, c_out, c_in), float64, one per sample


def _sigma(sigma: Tensor | float) -> Tensor:
    return torch.as_tensor(sigma, dtype=torch.float64)


@dataclass(frozen=True)
class ModelAdapter(ABC):
    """A parameterisation: raw network output → x̂_0 at noise level σ (and the learned variance)."""

    name: ClassVar[str]
    learns_variance: ClassVar[bool] = False

    @abstractmethod
    def scalings(self, sigma: Tensor) -> Scalings:
        """(c_skip, c_out, c_in) at the noise levels ``sigma`` (float64)."""

    def split(self, output: Tensor, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(the part that predicts the mean, the learned-variance part or None); checks the channels."""
        channels = x.shape[1]
        expected = 2 * channels if self.learns_variance else channels
        if output.shape != (x.shape[0], expected, *x.shape[2:]):
            raise UsageError(
                f"model output has shape {tuple(output.shape)}, expected {(x.shape[0], expected, *x.shape[2:])} "
                f"for a {self.describe()} model",
                hint="check learn_sigma: it must match the checkpoint",
            )
        if self.learns_variance:
            mean_part, var_part = torch.split(output, channels, dim=1)
            return mean_part, var_part
        return output, None

    def describe(self) -> str:
        return self.name

    def network_input(self, x: Tensor, sigma: Tensor) -> Tensor:
        """What the network is given: c_in·x."""
        return x * per_sample(self.scalings(sigma)[2], x)

    def denoised(self, mean_part: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """x̂_0 = c_skip·x + c_out·F (in x's dtype) from the network's mean part F."""
        c_skip, c_out, _ = self.scalings(sigma)
        return x * per_sample(c_skip, x) + per_sample(c_out, x) * mean_part.to(x.dtype)

    def denoise(self, network: Callable[..., Tensor], time: Tensor, x: Tensor, sigma: Tensor,
                **kwargs) -> tuple[Tensor, Tensor | None, Tensor]:
        """(x̂_0, learned-variance channels or None, the network's input) for x = x_0 + σ·ε.

        ``time`` is what the schedule tells the network (``Schedule.network_time``).
        """
        sigma = _sigma(sigma)
        x_in = self.network_input(x, sigma)
        mean_part, var_part = self.split(network(x_in, time, **kwargs), x)
        return self.denoised(mean_part, x, sigma), var_part, x_in


@dataclass(frozen=True)
class VPAdapter(ModelAdapter):
    """A variance-preserving network of guided- or improved-diffusion: it sees x_t = √ᾱ·x and may
    learn its reverse-step variance; it also runs on the original's discrete chain."""

    variance: ModelVarType = ModelVarType.FIXED_LARGE
    mean_type: ClassVar[ModelMeanType]

    @property
    def learns_variance(self) -> bool:  # type: ignore[override]
        return self.variance in (ModelVarType.LEARNED, ModelVarType.LEARNED_RANGE)

    def describe(self) -> str:
        return f"{self.name} ({self.variance.value} variance)"

    @staticmethod
    def c_in(sigma: Tensor) -> Tensor:
        """√ᾱ = 1/√(1 + σ²)."""
        return torch.rsqrt(1.0 + _sigma(sigma) ** 2)

    @abstractmethod
    def chain_x0(self, process: GaussianProcess, mean_part: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        """x̂_0 from the mean part at chain indices ``t`` (the original's float32 formulas)."""

    @abstractmethod
    def chain_target(self, process: GaussianProcess, x0: Tensor, x_t: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """What the mean part is trained to predict (L_simple's target)."""

    def chain_prediction(self, process: GaussianProcess, mean_part: Tensor, x_t: Tensor, t: Tensor,
                         correct: Callable[[Tensor], Tensor]) -> tuple[Tensor, Tensor]:
        """(posterior mean, x̂_0) of the reverse step: x̂_0 corrected (clipped), then q(x_{t−1} | x_t, x̂_0)'s mean."""
        pred_xstart = correct(self.chain_x0(process, mean_part, x_t, t))
        mean, _, _ = q_posterior_mean_variance(process, pred_xstart, x_t, t)
        return mean, pred_xstart


@dataclass(frozen=True)
class EpsilonVP(VPAdapter):
    """ε-prediction (DDPM, ADM): x̂_0 = x − σ·ε̂."""

    name: ClassVar[str] = "epsilon"
    mean_type: ClassVar[ModelMeanType] = ModelMeanType.EPSILON

    def scalings(self, sigma: Tensor) -> Scalings:
        sigma = _sigma(sigma)
        return torch.ones_like(sigma), -sigma, self.c_in(sigma)

    def chain_x0(self, process, mean_part, x_t, t):
        return predict_xstart_from_eps(process, x_t, t, mean_part)

    def chain_target(self, process, x0, x_t, t, noise):
        return noise


@dataclass(frozen=True)
class StartXVP(VPAdapter):
    """x_0-prediction (``--predict_xstart``): x̂_0 = F."""

    name: ClassVar[str] = "x0"
    mean_type: ClassVar[ModelMeanType] = ModelMeanType.START_X

    def scalings(self, sigma: Tensor) -> Scalings:
        sigma = _sigma(sigma)
        return torch.zeros_like(sigma), torch.ones_like(sigma), self.c_in(sigma)

    def chain_x0(self, process, mean_part, x_t, t):
        return mean_part

    def chain_target(self, process, x0, x_t, t, noise):
        return x0


@dataclass(frozen=True)
class VelocityVP(VPAdapter):
    """v-prediction (Salimans & Ho 2022): v = √ᾱ·ε − √(1−ᾱ)·x_0, so x̂_0 = √ᾱ·x_t − √(1−ᾱ)·v̂."""

    name: ClassVar[str] = "v"
    mean_type: ClassVar[ModelMeanType] = ModelMeanType.VELOCITY

    def scalings(self, sigma: Tensor) -> Scalings:
        sigma = _sigma(sigma)
        c_in = self.c_in(sigma)
        return c_in * c_in, -sigma * c_in, c_in

    def chain_x0(self, process, mean_part, x_t, t):
        p = process.on(x_t.device)
        return extract(p.sqrt_alphas_cumprod, t, x_t) * x_t - extract(p.sqrt_one_minus_alphas_cumprod, t, x_t) * mean_part

    def chain_target(self, process, x0, x_t, t, noise):
        p = process.on(x0.device)
        return extract(p.sqrt_alphas_cumprod, t, x0) * noise - extract(p.sqrt_one_minus_alphas_cumprod, t, x0) * x0


@dataclass(frozen=True)
class PreviousXVP(VPAdapter):
    """x_{t−1}-prediction (the original's PREVIOUS_X): defined only on a discrete chain."""

    name: ClassVar[str] = "previous_x"
    mean_type: ClassVar[ModelMeanType] = ModelMeanType.PREVIOUS_X

    def scalings(self, sigma: Tensor) -> Scalings:
        raise UsageError("a model that predicts the previous x can only be sampled with ddpm or ddim")

    def chain_x0(self, process, mean_part, x_t, t):
        return predict_xstart_from_xprev(process, x_t, t, mean_part)

    def chain_target(self, process, x0, x_t, t, noise):
        return q_posterior_mean_variance(process, x0, x_t, t)[0]

    def chain_prediction(self, process, mean_part, x_t, t, correct):
        return mean_part, correct(self.chain_x0(process, mean_part, x_t, t))


VP_ADAPTERS: dict[ModelMeanType, type[VPAdapter]] = {
    cls.mean_type: cls for cls in (EpsilonVP, StartXVP, VelocityVP, PreviousXVP)
}


def vp_adapter(mean_type: ModelMeanType, variance: ModelVarType) -> VPAdapter:
    """The VP adapter of the original's (model_mean_type, model_var_type) pair."""
    return VP_ADAPTERS[mean_type](variance)


@dataclass(frozen=True)
class EDM(ModelAdapter):
    """EDM preconditioning (Karras et al. 2022, Table 1), as consistency_models' ``get_scalings``."""

    sigma_data: float = 0.5
    name: ClassVar[str] = "edm"

    def scalings(self, sigma: Tensor) -> Scalings:
        sigma, sd = _sigma(sigma), self.sigma_data
        total = sigma**2 + sd**2
        return sd**2 / total, sigma * sd / total.sqrt(), total.rsqrt()


@dataclass(frozen=True)
class ConsistencyBoundary(EDM):
    """A consistency model (Song et al. 2023, §3): EDM's scalings shifted so that f(x, σ_min) = x
    exactly (``get_scalings_for_boundary_condition``)."""

    sigma_min: float = 0.002
    name: ClassVar[str] = "consistency"

    def scalings(self, sigma: Tensor) -> Scalings:
        sigma, sd = _sigma(sigma), self.sigma_data
        shifted = sigma - self.sigma_min
        return sd**2 / (shifted**2 + sd**2), shifted * sd / (sigma**2 + sd**2).sqrt(), (sigma**2 + sd**2).rsqrt()


@dataclass(frozen=True)
class ConsistencyOver(ModelAdapter):
    """A consistency model read over another parameterisation (``adm distill`` of a VP network):

        f(x, σ) = b(σ)·x + (1 − b(σ))·x̂_0(x, σ),    b(σ) = σd²/((σ − σmin)² + σd²)

    with x̂_0 the ``inner`` adapter's reading of the same network. b(σmin) = 1, so f(x, σmin) = x
    exactly (the boundary condition of Song et al. 2023, §3.1); at high σ, b → 0 and f is the
    network's own x̂_0, so a student initialised from its teacher starts as the teacher's x̂_0
    there. Everything else of the network stays: its input c_in', its time (the schedule's), its
    channels (a learned variance is split off and ignored). It is linear in the output, so it is one
    more set of scalings: (b + (1 − b)·c_skip', (1 − b)·c_out', c_in'). No discrete chain reads it.
    """

    inner: ModelAdapter
    sigma_min: float = 0.002
    sigma_data: float = 0.5
    name: ClassVar[str] = "consistency-over"

    @property
    def learns_variance(self) -> bool:  # type: ignore[override]
        return self.inner.learns_variance

    def describe(self) -> str:
        return f"consistency model over {self.inner.describe()}"

    def boundary(self, sigma: Tensor) -> Tensor:
        """b(σ): the weight of x itself, 1 at σmin."""
        sigma, sd = _sigma(sigma), self.sigma_data
        return sd**2 / ((sigma - self.sigma_min) ** 2 + sd**2)

    def scalings(self, sigma: Tensor) -> Scalings:
        sigma = _sigma(sigma)
        b = self.boundary(sigma)
        c_skip, c_out, c_in = self.inner.scalings(sigma)
        return b + (1 - b) * c_skip, (1 - b) * c_out, c_in
