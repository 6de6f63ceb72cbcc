"""The original's discrete chain: a network bound to a (respaced) process, and its exact steps.

``ChainDenoiser`` turns ``model(x, timesteps, **kwargs) -> raw output`` into a reverse-step
``Prediction`` at a chain index: the only place that maps chain indices to the timesteps the
network was trained with (respacing, rescaling) and reads the raw output's channels. The step
functions are guided-diffusion's ancestral (DDPM) and DDIM steps with the same float32 operation
order, so they reproduce its trajectories; ``adm.compat`` and the ``ddpm`` / ``ddim`` samplers
are built on them. ``noise`` is a noise source (see ``adm.sampling.noise``) called exactly where
guided-diffusion calls ``th.randn_like``: once per step, after the model forward and before
guidance, and also in DDIM with eta = 0 (where it is multiplied by 0), so recorded noise replays
in lockstep with the original.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from adm.diffusion.adapters import VPAdapter
from adm.diffusion.gaussian import Prediction, p_mean_variance, predict_eps_from_xstart
from adm.diffusion.process import GaussianProcess, extract
from adm.sampling.guidance import CondFn, condition_mean, condition_score, guidance_gradient
from adm.sampling.noise import NoiseSource

Tensor = torch.Tensor
ModelFn = Callable[..., torch.Tensor]


@dataclass
class ChainDenoiser:
    """A network bound to a discrete diffusion process and its (VP) model adapter.

    ``model`` is called as ``model(x, process.model_timesteps(t), **model_kwargs)``;
    ``clip_denoised`` clamps the x_0 estimate to [-1, 1] (after ``denoised_fn``, if any).
    """

    model: ModelFn
    process: GaussianProcess
    adapter: VPAdapter
    model_kwargs: dict = field(default_factory=dict)
    clip_denoised: bool = True
    denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> tuple[Prediction, torch.Tensor]:
        """(prediction, raw model output) at chain indices ``t`` ([B] int64)."""
        output = self.model(x, self.process.model_timesteps(t), **self.model_kwargs)
        prediction = p_mean_variance(
            self.process,
            self.adapter,
            output,
            x,
            t,
            clip_denoised=self.clip_denoised,
            denoised_fn=self.denoised_fn,
        )
        return prediction, output


class Step(NamedTuple):
    """A sampler step's result: the next x and the x_0 estimate it used."""

    sample: Tensor
    pred_xstart: Tensor


def _nonzero_mask(t: Tensor, x: Tensor) -> Tensor:
    """1 where t != 0 (no noise is added on the last step), shaped to broadcast over x."""
    return (t != 0).float().view(-1, *([1] * (x.ndim - 1)))


def _cond_kwargs(denoiser: ChainDenoiser, cond_kwargs: dict | None) -> dict:
    # Like the original, the guidance function gets the model's kwargs (e.g. y) unless told otherwise.
    return denoiser.model_kwargs if cond_kwargs is None else cond_kwargs


def _gradient(process, cond_fn: CondFn | None, x: Tensor, t: Tensor, kwargs: dict) -> Tensor | None:
    """The guidance gradient, or None when unguided (or the guidance skips this step)."""
    return None if cond_fn is None else guidance_gradient(process, cond_fn, x, t, kwargs)


def ddpm_step(
    denoiser: ChainDenoiser,
    x: Tensor,
    t: Tensor,
    *,
    noise: NoiseSource,
    cond_fn: CondFn | None = None,
    cond_kwargs: dict | None = None,
) -> Step:
    """Ancestral step x_{t−1} = mu + 1[t≠0]·sigma·z (DDPM Algorithm 2), guided by mean shift."""
    pred, _ = denoiser(x, t)
    z = noise(x)  # drawn before guidance, as the original does
    grad = _gradient(denoiser.process, cond_fn, x, t, _cond_kwargs(denoiser, cond_kwargs))
    guided = condition_mean(pred, grad) if grad is not None else pred
    sample = guided.mean + _nonzero_mask(t, x) * torch.exp(0.5 * pred.log_variance) * z
    return Step(sample, pred.pred_xstart)


def ddim_step(
    denoiser: ChainDenoiser,
    x: Tensor,
    t: Tensor,
    *,
    noise: NoiseSource,
    cond_fn: CondFn | None = None,
    cond_kwargs: dict | None = None,
    eta: float = 0.0,
) -> Step:
    """DDIM step (Song et al. eq. 12) on the (respaced) chain, guided by score shift.

    sigma = eta·sqrt((1 − abar_prev)/(1 − abar))·sqrt(1 − abar/abar_prev);
    x_prev = x0·sqrt(abar_prev) + sqrt(1 − abar_prev − sigma²)·eps + 1[t≠0]·sigma·z.
    """
    process = denoiser.process.on(x.device)
    pred, _ = denoiser(x, t)
    grad = _gradient(process, cond_fn, x, t, _cond_kwargs(denoiser, cond_kwargs))
    if grad is not None:
        pred = condition_score(process, pred, x, t, grad)
    eps = predict_eps_from_xstart(process, x, t, pred.pred_xstart)
    alpha_bar = extract(process.alphas_cumprod, t, x)
    alpha_bar_prev = extract(process.alphas_cumprod_prev, t, x)
    sigma = (
        eta
        * torch.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar))
        * torch.sqrt(1 - alpha_bar / alpha_bar_prev)
    )
    z = noise(x)  # drawn even when eta == 0, to stay aligned with the original's RNG use
    mean_pred = (
        pred.pred_xstart * torch.sqrt(alpha_bar_prev)
        + torch.sqrt(1 - alpha_bar_prev - sigma**2) * eps
    )
    return Step(mean_pred + _nonzero_mask(t, x) * sigma * z, pred.pred_xstart)


def ddim_reverse_step(denoiser: ChainDenoiser, x: Tensor, t: Tensor) -> Step:
    """Deterministic DDIM inversion x_t → x_{t+1}: x0·sqrt(abar_next) + sqrt(1 − abar_next)·eps."""
    process = denoiser.process.on(x.device)
    pred, _ = denoiser(x, t)
    eps = predict_eps_from_xstart(process, x, t, pred.pred_xstart)
    alpha_bar_next = extract(process.alphas_cumprod_next, t, x)
    sample = pred.pred_xstart * torch.sqrt(alpha_bar_next) + torch.sqrt(1 - alpha_bar_next) * eps
    return Step(sample, pred.pred_xstart)


def iterate_steps(
    step: Callable[..., Step], denoiser: ChainDenoiser, x_T: Tensor, **step_kwargs
) -> Iterator[tuple[int, Step]]:
    """Run ``step`` for chain indices T−1 … 0 starting at x_T, yielding (index, result).

    Each step runs under ``torch.no_grad`` (guidance enables gradients locally for itself);
    results are yielded outside it.
    """
    x = x_T
    for index in reversed(range(denoiser.process.num_steps)):
        t = torch.full((x.shape[0],), index, dtype=torch.long, device=x.device)
        with torch.no_grad():
            out = step(denoiser, x, t, **step_kwargs)
        yield index, out
        x = out.sample
