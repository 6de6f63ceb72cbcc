"""The one denoiser interface every sampler gets: the x_0 estimate at any noise level σ.

``Denoiser(x, sigma)`` takes x in the variance-exploding form x = x_0 + σ·ε (see
``adm.diffusion.continuous``) and returns the network's estimate of x_0, classifier-guided in
score form and clipped or thresholded, for any σ on the model's schedule. It is the only place
that converts to the network's own input (ADM's x_t and timestep), reads the raw output's
channels, applies guidance and corrects x_0, so a sampler is plain numerics on (x, σ) pairs.

The original's discrete samplers need more than x_0 (the learned variance, the exact float32
operation order of their chain): ``chain`` gives them the ``ChainDenoiser`` of the respaced
chain through the grid's levels, with the same guidance as a ``cond_fn``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from adm.core.errors import UsageError
from adm.diffusion.continuous import NoiseSchedule, per_sample, vp_scale
from adm.diffusion.gaussian import split_model_output
from adm.diffusion.process import ModelMeanType, Parameterization
from adm.sampling.chain import ChainDenoiser
from adm.sampling.guidance import ClassifierGuidance, CondFn

Tensor = torch.Tensor
ModelFn = Callable[..., Tensor]


def dynamic_threshold(x0: Tensor, quantile: float) -> Tensor:
    """Imagen's dynamic thresholding: per sample, s = max(1, quantile of |x_0|); clamp to ±s, divide by s."""
    flat = x0.detach().abs().reshape(x0.shape[0], -1).float()
    s = torch.quantile(flat, quantile, dim=1).clamp(min=1.0).to(x0.dtype)
    s = s.view(-1, *([1] * (x0.ndim - 1)))
    return x0.clamp(-s, s) / s


def to_variance_exploding(x_t: Tensor, sigma: Tensor | float) -> Tensor:
    """ADM's x_t at level σ → x_0 + σ·ε (divide by √ᾱ)."""
    return x_t / per_sample(vp_scale(sigma), x_t)


def to_variance_preserving(x: Tensor, sigma: Tensor | float) -> Tensor:
    """x_0 + σ·ε → ADM's x_t = √ᾱ·(x_0 + σ·ε)."""
    return x * per_sample(vp_scale(sigma), x)


@dataclass(frozen=True)
class Denoiser:
    """A network bound to its training schedule, guidance and x_0 correction.

    ``network(x_t, timesteps, **model_kwargs)`` is the raw model (the precision wrapper already
    applied): eps or x_0 prediction, with the learned-variance channels, if any, after them.
    ``clip_denoised`` clamps x_0 to [-1, 1]; ``threshold`` (a quantile, e.g. 0.995) replaces
    that with dynamic thresholding. Both act after guidance, so the guided x_0 stays in range.
    ``denoised_fn`` transforms x_0 just before that (inpainting puts the known pixels there).
    """

    network: ModelFn
    schedule: NoiseSchedule
    param: Parameterization
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    guidance: ClassifierGuidance | None = None
    clip_denoised: bool = True
    threshold: float | None = None
    denoised_fn: Callable[[Tensor], Tensor] | None = None

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """The x_0 estimate at ``x = x_0 + σ·ε``; ``sigma`` is a scalar or one level per sample."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).cpu()
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        tau = self.schedule.tau_at(sigma)
        t_model = self.schedule.model_timesteps(tau).to(device=x.device, dtype=torch.float32)
        x_t = to_variance_preserving(x, sigma)
        head, _ = split_model_output(self.param, self.network(x_t, t_model, **self.model_kwargs), x)
        if self.param.mean == ModelMeanType.EPSILON:
            x0 = x - per_sample(sigma, x) * head.to(x.dtype)
        elif self.param.mean == ModelMeanType.START_X:
            x0 = head.to(x.dtype)
        else:
            raise UsageError("a model that predicts the previous x can only be sampled with ddpm or ddim")
        if self.guidance is not None:
            x0 = self.guidance.shift_denoised(x0, x_t, t_model, sigma)
        return self.correct(x0)

    def correct(self, x0: Tensor) -> Tensor:
        if self.denoised_fn is not None:
            x0 = self.denoised_fn(x0)
        if self.threshold is not None:
            return dynamic_threshold(x0, self.threshold)
        return x0.clamp(-1, 1) if self.clip_denoised else x0

    def chain(self, sigmas: Tensor) -> tuple[ChainDenoiser, CondFn | None]:
        """The original's discrete chain through the grid's levels, and its guidance ``cond_fn``.

        The grid must sit on the model's integer timesteps (``--spacing respaced``) and end at 0:
        the chain's last step lands on the clean image. The chain is built from the schedule's
        own betas, so it is bit-for-bit the original's respaced chain.
        """
        sigmas = torch.as_tensor(sigmas, dtype=torch.float64)
        if sigmas.numel() < 2 or float(sigmas[-1]) != 0.0:
            raise UsageError("ddpm and ddim end at the clean image: their grid must end with sigma 0")
        taus = self.schedule.tau_at(sigmas[:-1])
        kept = taus.round()
        if float((taus - kept).abs().max()) > 1e-6 or not bool((kept[1:] < kept[:-1]).all()):
            raise UsageError(
                "ddpm and ddim walk the model's own integer timesteps", "use --spacing respaced (their default)"
            )
        process = self.schedule.chain(sorted(int(k) for k in kept))
        denoiser = ChainDenoiser(
            self.network, process, self.param, dict(self.model_kwargs), self.clip_denoised, self._chain_denoised_fn()
        )
        return denoiser, (self.guidance.gradient if self.guidance is not None else None)

    def _chain_denoised_fn(self) -> Callable[[Tensor], Tensor] | None:
        """``denoised_fn``, then thresholding: the chain's clamp comes after, as in the original."""
        if self.denoised_fn is None and self.threshold is None:
            return None

        def correct(x0: Tensor) -> Tensor:
            if self.denoised_fn is not None:
                x0 = self.denoised_fn(x0)
            return dynamic_threshold(x0, self.threshold) if self.threshold is not None else x0

        return correct
