"""The one denoiser interface every sampler gets: the x_0 estimate at any noise level σ.

``Denoiser(x, sigma)`` takes x in the variance-exploding form x = x_0 + σ·ε and returns the
network's estimate of x_0, classifier-guided in score form and clipped or thresholded, for any σ
on the model's schedule. The model adapter (``adm.diffusion.adapters``) reads the network's
output, the schedule says what time the network is told (``Schedule.network_time``), so a sampler
is plain numerics on (x, σ) pairs for every family.

A sampler's state is in the model's own scaling (``to_state`` / ``from_state``): ADM's
x_t = √ᾱ·(x_0 + σ·ε) for VP models, x_0 + σ·ε itself for EDM and consistency models.

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
from adm.diffusion.adapters import ModelAdapter, VPAdapter
from adm.diffusion.continuous import per_sample
from adm.diffusion.karras import Schedule
from adm.sampling.chain import ChainDenoiser
from adm.sampling.guidance.classifier import CondFn
from adm.sampling.guidance.protocol import Guidance, Guided

Tensor = torch.Tensor
ModelFn = Callable[..., Tensor]


def dynamic_threshold(x0: Tensor, quantile: float) -> Tensor:
    """Imagen's dynamic thresholding: per sample, s = max(1, quantile of |x_0|); clamp to ±s, divide by s."""
    flat = x0.detach().abs().reshape(x0.shape[0], -1).float()
    s = torch.quantile(flat, quantile, dim=1).clamp(min=1.0).to(x0.dtype)
    s = s.view(-1, *([1] * (x0.ndim - 1)))
    return x0.clamp(-s, s) / s


@dataclass(frozen=True)
class Denoiser:
    """A network bound to its schedule, its adapter, guidance and x_0 correction.

    ``network(x_in, time, **model_kwargs)`` is the raw model (the precision wrapper already
    applied); ``adapter`` reads its output (``adm.diffusion.adapters``).
    ``clip_denoised`` clamps x_0 to [-1, 1]; ``threshold`` (a quantile, e.g. 0.995) replaces
    that with dynamic thresholding. Both act after guidance, so the guided x_0 stays in range.
    ``denoised_fn`` transforms x_0 just before that (inpainting puts the known pixels there).
    """

    network: ModelFn
    schedule: Schedule
    adapter: ModelAdapter
    model_kwargs: Mapping[str, Any] = field(default_factory=dict)
    guidance: tuple[Guidance, ...] = ()
    clip_denoised: bool = True
    threshold: float | None = None
    denoised_fn: Callable[[Tensor], Tensor] | None = None

    def __post_init__(self):
        methods = () if self.guidance is None else self.guidance if isinstance(self.guidance, tuple) else (self.guidance,)
        object.__setattr__(self, "guidance", methods)
        object.__setattr__(self, "guided", Guided.make(self.network, methods, self.schedule.time_fraction))

    def __call__(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """The x_0 estimate at ``x = x_0 + σ·ε``; ``sigma`` is a scalar or one level per sample."""
        sigma = torch.as_tensor(sigma, dtype=torch.float64).cpu()
        if sigma.ndim == 0:
            sigma = sigma.expand(x.shape[0])
        time = self.schedule.network_time(sigma).to(device=x.device, dtype=torch.float32)
        x0, _, _ = self.adapter.denoise(self.guided.network, time, x, sigma, **self.model_kwargs)
        for method in self.guided.score:
            x0 = method.shift_denoised(x0, x, sigma)
        return self.correct(x0)

    def to_state(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """x_0 + σ·ε → the sampler's state in the model's scaling (ADM's x_t for VP models)."""
        return x * per_sample(self.schedule.state_scale(sigma), x)

    def from_state(self, x: Tensor, sigma: Tensor | float) -> Tensor:
        """The sampler's state at level σ → x_0 + σ·ε (what the solvers integrate)."""
        return x / per_sample(self.schedule.state_scale(sigma), x)

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
        if not self.schedule.discrete or not isinstance(self.adapter, VPAdapter):
            raise UsageError("ddpm and ddim walk a discrete Gaussian chain, and this model has none",
                             "use a solver (dpm++2m, unipc, heun, ...)")
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
            self.guided.network, process, self.adapter, dict(self.model_kwargs), self.clip_denoised,
            self._chain_denoised_fn(),
        )
        return denoiser, self.guided.cond_fn()

    def _chain_denoised_fn(self) -> Callable[[Tensor], Tensor] | None:
        """``denoised_fn``, then thresholding: the chain's clamp comes after, as in the original."""
        if self.denoised_fn is None and self.threshold is None:
            return None

        def correct(x0: Tensor) -> Tensor:
            if self.denoised_fn is not None:
                x0 = self.denoised_fn(x0)
            return dynamic_threshold(x0, self.threshold) if self.threshold is not None else x0

        return correct
