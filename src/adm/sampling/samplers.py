"""Samplers: one step function each and one shared loop over t = T−1 … 0.

Every registered sampler has the same signature,
``sampler(denoiser, x_T, *, noise, cond_fn, cond_kwargs, callback, **knobs) -> x_0``,
so front-ends pick one by name from ``SAMPLERS``. ``noise`` is a noise source (see
``adm.sampling.noise``) called exactly where guided-diffusion calls ``th.randn_like``: once per
step, after the model forward and before guidance, and also in DDIM with eta = 0 (where it is
multiplied by 0), so recorded noise replays in lockstep with the original.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import NamedTuple

import torch

from adm.diffusion.gaussian import predict_eps_from_xstart
from adm.diffusion.process import extract
from adm.errors import UsageError
from adm.sampling.denoiser import Denoiser
from adm.sampling.guidance import CondFn, condition_mean, condition_score, guidance_gradient
from adm.sampling.noise import NoiseSource

Tensor = torch.Tensor
Callback = Callable[[dict], None]


class Step(NamedTuple):
    """A sampler step's result: the next x and the x_0 estimate it used."""

    sample: Tensor
    pred_xstart: Tensor


def _nonzero_mask(t: Tensor, x: Tensor) -> Tensor:
    """1 where t != 0 (no noise is added on the last step), shaped to broadcast over x."""
    return (t != 0).float().view(-1, *([1] * (x.ndim - 1)))


def _cond_kwargs(denoiser: Denoiser, cond_kwargs: dict | None) -> dict:
    # Like the original, the guidance function gets the model's kwargs (e.g. y) unless told otherwise.
    return denoiser.model_kwargs if cond_kwargs is None else cond_kwargs


def ddpm_step(
    denoiser: Denoiser,
    x: Tensor,
    t: Tensor,
    *,
    noise: NoiseSource = torch.randn_like,
    cond_fn: CondFn | None = None,
    cond_kwargs: dict | None = None,
) -> Step:
    """Ancestral step x_{t−1} = mu + 1[t≠0]·sigma·z (DDPM Algorithm 2), guided by mean shift."""
    pred, _ = denoiser(x, t)
    z = noise(x)  # drawn before guidance, as the original does
    if cond_fn is not None:
        grad = guidance_gradient(
            denoiser.process, cond_fn, x, t, _cond_kwargs(denoiser, cond_kwargs)
        )
        guided = condition_mean(pred, grad)
    else:
        guided = pred
    sample = guided.mean + _nonzero_mask(t, x) * torch.exp(0.5 * pred.log_variance) * z
    return Step(sample, pred.pred_xstart)


def ddim_step(
    denoiser: Denoiser,
    x: Tensor,
    t: Tensor,
    *,
    noise: NoiseSource = torch.randn_like,
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
    if cond_fn is not None:
        grad = guidance_gradient(process, cond_fn, x, t, _cond_kwargs(denoiser, cond_kwargs))
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


def ddim_reverse_step(denoiser: Denoiser, x: Tensor, t: Tensor) -> Step:
    """Deterministic DDIM inversion x_t → x_{t+1}: x0·sqrt(abar_next) + sqrt(1 − abar_next)·eps."""
    process = denoiser.process.on(x.device)
    pred, _ = denoiser(x, t)
    eps = predict_eps_from_xstart(process, x, t, pred.pred_xstart)
    alpha_bar_next = extract(process.alphas_cumprod_next, t, x)
    sample = pred.pred_xstart * torch.sqrt(alpha_bar_next) + torch.sqrt(1 - alpha_bar_next) * eps
    return Step(sample, pred.pred_xstart)


def iterate_steps(
    step: Callable[..., Step], denoiser: Denoiser, x_T: Tensor, **step_kwargs
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


def _run(step, denoiser, x_T, callback: Callback | None, **step_kwargs) -> Tensor:
    x = x_T
    for i, (index, out) in enumerate(iterate_steps(step, denoiser, x_T, **step_kwargs)):
        if callback is not None:
            callback({"i": i, "t": index, "x": out.sample, "pred_xstart": out.pred_xstart})
        x = out.sample
    return x


def sample_ddpm(
    denoiser: Denoiser,
    x_T: Tensor,
    *,
    noise: NoiseSource = torch.randn_like,
    cond_fn: CondFn | None = None,
    cond_kwargs: dict | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """Ancestral sampling over every step of the denoiser's (respaced) chain."""
    return _run(
        ddpm_step, denoiser, x_T, callback, noise=noise, cond_fn=cond_fn, cond_kwargs=cond_kwargs
    )


def sample_ddim(
    denoiser: Denoiser,
    x_T: Tensor,
    *,
    noise: NoiseSource = torch.randn_like,
    cond_fn: CondFn | None = None,
    cond_kwargs: dict | None = None,
    callback: Callback | None = None,
    eta: float = 0.0,
) -> Tensor:
    """DDIM sampling (deterministic for eta = 0) over the denoiser's (respaced) chain."""
    return _run(
        ddim_step,
        denoiser,
        x_T,
        callback,
        noise=noise,
        cond_fn=cond_fn,
        cond_kwargs=cond_kwargs,
        eta=eta,
    )


SAMPLERS: dict[str, Callable[..., Tensor]] = {"ddpm": sample_ddpm, "ddim": sample_ddim}
SAMPLER_ENTRY_POINTS = "adm.samplers"


def available_samplers() -> dict[str, Callable[..., Tensor]]:
    """Built-in samplers plus those other packages register under the entry-point group
    ``adm.samplers`` (a function with the shared signature ``(denoiser, x_T, *, noise, cond_fn,
    cond_kwargs, callback, **options)``). Built-in names cannot be overridden."""
    from importlib.metadata import entry_points

    found = dict(SAMPLERS)
    for ep in entry_points(group=SAMPLER_ENTRY_POINTS):
        if ep.name not in found:
            found[ep.name] = ep
    return found


def get_sampler(name: str) -> Callable[..., Tensor]:
    """The sampler called ``name`` (built-in or from a plugin)."""
    samplers = available_samplers()
    if name not in samplers:
        raise UsageError(f"unknown sampler {name!r}", hint=f"choose one of {', '.join(sorted(samplers))}")
    sampler = samplers[name]
    return sampler if name in SAMPLERS else sampler.load()
