"""Training losses and likelihoods (improved DDPM, Nichol & Dhariwal 2021, §3).

Everything returns per-sample, unreduced terms of shape [B]; callers weight and average.
Bits per dimension are nats / ln 2 averaged over all non-batch dimensions.

A training loss is a small callable, as in EDM's ``loss.py``: built once from what it needs of the
model (process, adapter), then called on the network and a batch. A training task names its losses
(``adm.training.tasks.TaskSpec.losses``) and its config's ``loss`` chooses one; ``ChainLoss`` is
the diffusion task's ``ddpm``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from adm.diffusion.adapters import VPAdapter
from adm.diffusion.gaussian import (
    p_mean_variance,
    predict_eps_from_xstart,
    q_mean_variance,
    q_posterior_mean_variance,
    q_sample,
)
from adm.diffusion.process import GaussianProcess, LossType

Tensor = torch.Tensor
ModelFn = Callable[..., Tensor]  # model_fn(x_t, model_timesteps, **model_kwargs) -> raw output
_LN2 = math.log(2.0)


def mean_flat(x: Tensor) -> Tensor:
    """Mean over every dimension but the batch."""
    return x.mean(dim=list(range(1, x.ndim)))


def normal_kl(mean1, logvar1, mean2, logvar2) -> Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats; scalars broadcast."""
    like = next(a for a in (mean1, logvar1, mean2, logvar2) if isinstance(a, Tensor))
    logvar1, logvar2 = (
        v if isinstance(v, Tensor) else torch.tensor(v).to(like) for v in (logvar1, logvar2)
    )
    return 0.5 * (
        -1.0
        + logvar2
        - logvar1
        + torch.exp(logvar1 - logvar2)
        + ((mean1 - mean2) ** 2) * torch.exp(-logvar2)
    )


def approx_standard_normal_cdf(x: Tensor) -> Tensor:
    """The tanh approximation of the standard normal CDF used by the original."""
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))


def discretized_gaussian_log_likelihood(x: Tensor, *, means: Tensor, log_scales: Tensor) -> Tensor:
    """log p(x) of images on the 256-level grid in [-1, 1] under N(means, e^{2 log_scales}).

    Each value owns the bin x ± 1/255; the extreme bins extend to ±inf. Probabilities are
    clamped at 1e-12 before the log.
    """
    centered = x - means
    inv_stdv = torch.exp(-log_scales)
    cdf_plus = approx_standard_normal_cdf(inv_stdv * (centered + 1.0 / 255.0))
    cdf_min = approx_standard_normal_cdf(inv_stdv * (centered - 1.0 / 255.0))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus_cdf_min = torch.log((1.0 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(
        x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus_cdf_min, log_delta)
    )


def vb_terms_bpd(
    process: GaussianProcess,
    adapter: VPAdapter,
    model_output: Tensor,
    x_start: Tensor,
    x_t: Tensor,
    t: Tensor,
    clip_denoised: bool = True,
):
    """One term of the variational bound, in bits/dim: (terms [B], Prediction).

    KL(q(x_{t−1} | x_t, x_0) ‖ p(x_{t−1} | x_t)) for t > 0 and the discretised decoder NLL
    −log p(x_0 | x_1) where t == 0.
    """
    true_mean, _, true_log_variance = q_posterior_mean_variance(process, x_start, x_t, t)
    pred = p_mean_variance(process, adapter, model_output, x_t, t, clip_denoised=clip_denoised)
    kl = mean_flat(normal_kl(true_mean, true_log_variance, pred.mean, pred.log_variance)) / _LN2
    decoder_nll = -discretized_gaussian_log_likelihood(
        x_start, means=pred.mean, log_scales=0.5 * pred.log_variance
    )
    decoder_nll = mean_flat(decoder_nll) / _LN2
    return torch.where(t == 0, decoder_nll, kl), pred


def training_losses(
    process: GaussianProcess,
    adapter: VPAdapter,
    loss_type: LossType,
    model_fn: ModelFn,
    x0: Tensor,
    t: Tensor,
    *,
    noise: Tensor,
    model_kwargs: dict | None = None,
) -> dict[str, Tensor]:
    """Per-sample losses at chain indices ``t``: keys ``loss``, and ``mse``/``vb`` when used.

    ``noise`` is the ε of ``x_t``, drawn by the caller from its own generator (no global RNG).

    KL / RESCALED_KL: the bound term itself (times T for RESCALED_KL).
    MSE / RESCALED_MSE: ``mse`` against the adapter's target (eps, x_0, v or the posterior mean); with a learned variance
    the hybrid loss adds ``vb``, computed with the mean output frozen (detached) so L_vlb only
    trains the variance (times T/1000 for RESCALED_MSE).
    """
    model_kwargs = model_kwargs or {}
    x_t = q_sample(process, x0, t, noise)
    model_t = process.model_timesteps(t)
    terms: dict[str, Tensor] = {}

    if loss_type.is_vb():
        output = model_fn(x_t, model_t, **model_kwargs)
        terms["loss"], _ = vb_terms_bpd(process, adapter, output, x0, x_t, t, clip_denoised=False)
        if loss_type == LossType.RESCALED_KL:
            terms["loss"] = terms["loss"] * process.num_steps
        return terms

    output = model_fn(x_t, model_t, **model_kwargs)
    mean_output, var_values = adapter.split(output, x_t)
    if var_values is not None:
        frozen = torch.cat([mean_output.detach(), var_values], dim=1)
        terms["vb"], _ = vb_terms_bpd(process, adapter, frozen, x0, x_t, t, clip_denoised=False)
        if loss_type == LossType.RESCALED_MSE:
            terms["vb"] = terms["vb"] * (process.num_steps / 1000.0)

    target = adapter.chain_target(process, x0, x_t, t, noise)
    terms["mse"] = mean_flat((target - mean_output) ** 2)
    terms["loss"] = terms["mse"] + terms["vb"] if "vb" in terms else terms["mse"]
    return terms


@dataclass(frozen=True)
class ChainLoss:
    """The ADM objective on the original's chain (``training_losses``), as the flags set it: the
    MSE against the adapter's target (ε, x₀, v), plus L_vlb for a learned variance (the hybrid
    loss), or the bound itself with ``--use_kl``.

    ``loss(net, x0, t=t, noise=noise, model_kwargs=kwargs)`` → per-sample terms ``loss`` (and
    ``mse`` / ``vb``), each [B]: the signature the diffusion task calls its loss with.
    """

    process: GaussianProcess
    adapter: VPAdapter
    loss_type: LossType

    def __call__(self, net: ModelFn, x0: Tensor, *, t: Tensor, noise: Tensor,
                 model_kwargs: dict | None = None) -> dict[str, Tensor]:
        return training_losses(self.process, self.adapter, self.loss_type, net, x0, t, noise=noise,
                               model_kwargs=model_kwargs)


def prior_bpd(process: GaussianProcess, x_start: Tensor) -> Tensor:
    """KL(q(x_T | x_0) ‖ N(0, I)) in bits/dim; not trainable, nearly 0 for a good schedule."""
    t = torch.full(
        (x_start.shape[0],), process.num_steps - 1, dtype=torch.long, device=x_start.device
    )
    mean, _, log_variance = q_mean_variance(process, x_start, t)
    return mean_flat(normal_kl(mean, log_variance, 0.0, 0.0)) / _LN2


def calc_bpd_loop(
    process: GaussianProcess,
    adapter: VPAdapter,
    model_fn: ModelFn,
    x_start: Tensor,
    clip_denoised: bool = True,
    model_kwargs: dict | None = None,
    *,
    noise_fn: Callable[[Tensor], Tensor],
) -> dict[str, Tensor]:
    """The full variational bound of ``x_start`` in bits/dim, one chain step at a time.

    ``noise_fn(x)`` draws each step's ε (``torch.randn_like``'s signature), from the caller's generator.

    Returns ``total_bpd`` [B], ``prior_bpd`` [B] and the per-step ``vb``, ``xstart_mse`` and
    ``mse`` (eps error) [B, T], whose column 0 is chain step T − 1 (the loop order, as the
    original stores them).
    """
    model_kwargs = model_kwargs or {}
    vb, xstart_mse, mse = [], [], []
    for index in reversed(range(process.num_steps)):
        t = torch.full((x_start.shape[0],), index, dtype=torch.long, device=x_start.device)
        noise = noise_fn(x_start)
        x_t = q_sample(process, x_start, t, noise)
        with torch.no_grad():
            output = model_fn(x_t, process.model_timesteps(t), **model_kwargs)
            terms, pred = vb_terms_bpd(process, adapter, output, x_start, x_t, t, clip_denoised)
        vb.append(terms)
        xstart_mse.append(mean_flat((pred.pred_xstart - x_start) ** 2))
        eps = predict_eps_from_xstart(process, x_t, t, pred.pred_xstart)
        mse.append(mean_flat((eps - noise) ** 2))
    vb_all = torch.stack(vb, dim=1)
    prior = prior_bpd(process, x_start)
    return {
        "total_bpd": vb_all.sum(dim=1) + prior,
        "prior_bpd": prior,
        "vb": vb_all,
        "xstart_mse": torch.stack(xstart_mse, dim=1),
        "mse": torch.stack(mse, dim=1),
    }
