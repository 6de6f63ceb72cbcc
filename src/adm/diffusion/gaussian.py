"""Closed-form Gaussian-diffusion formulas (DDPM, Ho et al. 2020; improved DDPM, Nichol & Dhariwal).

Free functions of a ``GaussianProcess`` and tensors; none of them calls a network.
``p_mean_variance`` interprets a raw network output that the caller computed. ``t`` is always a
[B] int64 tensor of chain indices; coefficients are float64 arrays gathered at ``t`` and cast to
float32 (``extract``), exactly as guided-diffusion does, so the float32 results match it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch

from adm.diffusion.process import GaussianProcess, ModelVarType, extract

Tensor = torch.Tensor


class Prediction(NamedTuple):
    """The reverse step p(x_{t−1} | x_t) = N(mean, variance) and the x_0 estimate behind it."""

    mean: Tensor
    variance: Tensor
    log_variance: Tensor
    pred_xstart: Tensor


def q_mean_variance(process: GaussianProcess, x_start: Tensor, t: Tensor):
    """q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 − abar_t) I): (mean, variance, log_variance)."""
    p = process.on(x_start.device)
    mean = extract(p.sqrt_alphas_cumprod, t, x_start) * x_start
    variance = extract(p.one_minus_alphas_cumprod, t, x_start)
    log_variance = extract(p.log_one_minus_alphas_cumprod, t, x_start)
    return mean, variance, log_variance


def q_sample(process: GaussianProcess, x_start: Tensor, t: Tensor, noise: Tensor) -> Tensor:
    """x_t = sqrt(abar_t) x_0 + sqrt(1 − abar_t) eps (DDPM eq. 4)."""
    p = process.on(x_start.device)
    return (
        extract(p.sqrt_alphas_cumprod, t, x_start) * x_start
        + extract(p.sqrt_one_minus_alphas_cumprod, t, x_start) * noise
    )


def q_posterior_mean_variance(process: GaussianProcess, x_start: Tensor, x_t: Tensor, t: Tensor):
    """q(x_{t−1} | x_t, x_0) (DDPM eqs. 6-7): (mean, variance, log_variance_clipped)."""
    p = process.on(x_t.device)
    mean = (
        extract(p.posterior_mean_coef1, t, x_t) * x_start
        + extract(p.posterior_mean_coef2, t, x_t) * x_t
    )
    variance = extract(p.posterior_variance, t, x_t)
    log_variance = extract(p.posterior_log_variance_clipped, t, x_t)
    return mean, variance, log_variance


def predict_xstart_from_eps(
    process: GaussianProcess, x_t: Tensor, t: Tensor, eps: Tensor
) -> Tensor:
    """x_0 = sqrt(1/abar_t) x_t − sqrt(1/abar_t − 1) eps."""
    p = process.on(x_t.device)
    return (
        extract(p.sqrt_recip_alphas_cumprod, t, x_t) * x_t
        - extract(p.sqrt_recipm1_alphas_cumprod, t, x_t) * eps
    )


def predict_eps_from_xstart(
    process: GaussianProcess, x_t: Tensor, t: Tensor, pred_xstart: Tensor
) -> Tensor:
    """eps = (sqrt(1/abar_t) x_t − x_0) / sqrt(1/abar_t − 1)."""
    p = process.on(x_t.device)
    return (extract(p.sqrt_recip_alphas_cumprod, t, x_t) * x_t - pred_xstart) / extract(
        p.sqrt_recipm1_alphas_cumprod, t, x_t
    )


def predict_xstart_from_xprev(
    process: GaussianProcess, x_t: Tensor, t: Tensor, xprev: Tensor
) -> Tensor:
    """Invert the posterior mean: x_0 = (x_{t−1} − coef2 x_t) / coef1."""
    p = process.on(x_t.device)
    return (
        extract(p.recip_posterior_mean_coef1, t, x_t) * xprev
        - extract(p.posterior_mean_coef2_over_coef1, t, x_t) * x_t
    )


def p_mean_variance(
    process: GaussianProcess,
    adapter: Any,  # an adm.diffusion.adapters.VPAdapter (which imports this module)
    model_output: Tensor,
    x: Tensor,
    t: Tensor,
    clip_denoised: bool = True,
    denoised_fn: Callable[[Tensor], Tensor] | None = None,
) -> Prediction:
    """Read a raw network output at (x_t, t) as the reverse step p(x_{t−1} | x_t).

    Variance: LEARNED reads log sigma^2; LEARNED_RANGE interpolates
    log sigma^2 = frac·log beta_t + (1 − frac)·log beta~_t with frac = (v + 1)/2 (v not clamped);
    FIXED_SMALL is beta~_t; FIXED_LARGE is beta_t (beta~_1 at t = 0).
    Mean: the adapter predicts x_0 (from eps, directly, from v or from x_{t−1}), which is passed
    through ``denoised_fn`` and clamped to [-1, 1] if ``clip_denoised``; the mean is then the
    posterior mean given that x_0 (or the raw output for PREVIOUS_X).
    """
    p = process.on(x.device)
    output, var_values = adapter.split(model_output, x)

    if adapter.variance == ModelVarType.LEARNED:
        log_variance = var_values
        variance = torch.exp(log_variance)
    elif adapter.variance == ModelVarType.LEARNED_RANGE:
        min_log = extract(p.posterior_log_variance_clipped, t, x)
        max_log = extract(p.log_betas, t, x)
        frac = (var_values + 1) / 2
        log_variance = frac * max_log + (1 - frac) * min_log
        variance = torch.exp(log_variance)
    elif adapter.variance == ModelVarType.FIXED_LARGE:
        variance = extract(p.fixed_large_variance, t, x)
        log_variance = extract(p.fixed_large_log_variance, t, x)
    else:
        variance = extract(p.posterior_variance, t, x)
        log_variance = extract(p.posterior_log_variance_clipped, t, x)

    def process_xstart(x0: Tensor) -> Tensor:
        if denoised_fn is not None:
            x0 = denoised_fn(x0)
        return x0.clamp(-1, 1) if clip_denoised else x0

    mean, pred_xstart = adapter.chain_prediction(p, output, x, t, process_xstart)
    return Prediction(mean, variance, log_variance, pred_xstart)
