"""Classifier guidance (Dhariwal & Nichol 2021, Algorithms 1 and 2) as transformations of a prediction.

A ``cond_fn(x, t_model, **kwargs)`` returns s·∇_x log p(y | x_t). It receives the timesteps the
networks were trained with (``process.model_timesteps``), as the original's ``_WrappedModel``
passes them, and is evaluated at x_t itself (for ``condition_mean`` the original evaluates it at
x_t rather than at the mean; kept for parity, see guided-diffusion issue #51).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from adm.diffusion.gaussian import (
    Prediction,
    predict_eps_from_xstart,
    predict_xstart_from_eps,
    q_posterior_mean_variance,
)
from adm.diffusion.process import GaussianProcess, extract

Tensor = torch.Tensor
CondFn = Callable[..., Tensor]


def classifier_grad_fn(classifier: Callable[[Tensor, Tensor], Tensor], scale: float) -> CondFn:
    """``cond_fn(x, t_model, y) = scale · ∇_x Σ_i log softmax(classifier(x, t_model))[i, y_i]``.

    Summing over the batch is exact because samples do not interact. Gradients are enabled
    locally, so this works inside a ``torch.no_grad`` sampling loop.
    """

    def cond_fn(x: Tensor, t: Tensor, y: Tensor, **_ignored) -> Tensor:
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(True)
            log_probs = F.log_softmax(classifier(x_in, t), dim=-1)
            selected = log_probs[torch.arange(len(log_probs), device=log_probs.device), y.view(-1)]
            return torch.autograd.grad(selected.sum(), x_in)[0] * scale

    return cond_fn


def guidance_gradient(
    process: GaussianProcess, cond_fn: CondFn, x: Tensor, t: Tensor, cond_kwargs: dict | None
) -> Tensor:
    """Evaluate ``cond_fn`` at x_t with the network timesteps of chain indices ``t``."""
    return cond_fn(x, process.model_timesteps(t), **(cond_kwargs or {}))


def condition_mean(prediction: Prediction, grad: Tensor) -> Prediction:
    """Ancestral guidance: shift the mean by Sigma·g (Sohl-Dickstein et al.; ADM Algorithm 1).

    Only the mean changes; ``pred_xstart`` stays the unguided estimate, as in the original.
    """
    mean = prediction.mean.float() + prediction.variance * grad.float()
    return prediction._replace(mean=mean)


def condition_score(
    process: GaussianProcess, prediction: Prediction, x: Tensor, t: Tensor, grad: Tensor
) -> Prediction:
    """Score guidance for DDIM (Song et al.; ADM Algorithm 2): eps' = eps − sqrt(1 − abar_t)·g.

    x_0 is re-derived from eps' (and, as in the original, not clipped again); the mean is the
    posterior mean given that x_0. ``sqrt(1 − abar_t)`` is computed in float32 from the float32
    abar_t, as the original does.
    """
    p = process.on(x.device)
    alpha_bar = extract(p.alphas_cumprod, t, x)
    eps = predict_eps_from_xstart(p, x, t, prediction.pred_xstart)
    eps = eps - (1 - alpha_bar).sqrt() * grad
    pred_xstart = predict_xstart_from_eps(p, x, t, eps)
    mean, _, _ = q_posterior_mean_variance(p, pred_xstart, x, t)
    return prediction._replace(mean=mean, pred_xstart=pred_xstart)
