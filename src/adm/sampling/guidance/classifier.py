"""Classifier guidance (Dhariwal & Nichol 2021, Algorithms 1 and 2) as a wrapper around the model.

A ``cond_fn(x, t_model, **kwargs)`` returns s·∇_x log p(y | x_t). It receives the timesteps the
networks were trained with (``process.model_timesteps``), as the original's ``_WrappedModel``
passes them, and is evaluated at x_t itself (for ``condition_mean`` the original evaluates it at
x_t rather than at the mean; kept for parity, see guided-diffusion issue #51).

``ClassifierGuidance`` is what samplers get: ``adm.sampling.denoiser.Denoiser`` applies it to its
x_0 estimate in score form (every sampler is guided for free), and hands it to the discrete
``ddpm`` / ``ddim`` steps as their ``cond_fn`` (the exact mean-shift and score-shift forms). It
can be limited to part of the trajectory (``interval``); outside it the classifier is not run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from adm.core.errors import UsageError
from adm.diffusion.continuous import NoiseSchedule, per_sample, vp_scale
from adm.diffusion.gaussian import (
    Prediction,
    predict_eps_from_xstart,
    predict_xstart_from_eps,
    q_posterior_mean_variance,
)
from adm.diffusion.process import GaussianProcess, extract
from adm.sampling.guidance.protocol import ScoreGuidance, within

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



@dataclass(frozen=True, kw_only=True)
class ClassifierGuidance(ScoreGuidance):
    """s·∇ log p(y | x_t) of a noisy classifier, applied where lo ≤ τ/T ≤ hi.

    ``classifier(x_t, time) -> logits`` sees ADM's x_t and the timesteps it was trained with:
    ``schedule`` is the classifier's own training schedule, which maps any σ to its time (for a
    VP model it is the model's schedule; an EDM model is guided through the σ ↔ t map of the
    classifier's). The interval is read in fractions of that schedule's T.
    """

    classifier: Callable[[Tensor, Tensor], Tensor]
    labels: Tensor
    schedule: NoiseSchedule
    name: ClassVar[str] = "classifier"

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "_cond_fn", classifier_grad_fn(self.classifier, self.scale))

    def _active(self, time: Tensor) -> Tensor:
        steps = self.schedule.num_steps
        tau = torch.as_tensor(time, dtype=torch.float64)
        if self.schedule.rescale_timesteps:
            tau = tau * (steps / 1000.0)
        return within(tau / steps, self.interval)

    def gradient(self, x: Tensor, time: Tensor, **_ignored) -> Tensor | None:
        """s·∇ log p(y | x) at ADM's x_t and the classifier's ``time``, or None where the interval
        skips every sample.

        Usable as the discrete steps' ``cond_fn`` (the labels are its own, not the model's).
        """
        active = self._active(time)
        if not bool(active.any()):
            return None
        grad = self._cond_fn(x, time, self.labels)
        if not bool(active.all()):
            grad = grad * active.to(device=grad.device, dtype=grad.dtype).view(-1, *([1] * (grad.ndim - 1)))
        return grad

    def shift_denoised(self, x0: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """Score-form guidance on an x_0 estimate at x = x_0 + σ·ε: x_0 + σ·√(1 − ᾱ)·g.

        With ε' = ε − √(1 − ᾱ)·g (ADM Algorithm 2) and x = x_0 + σ·ε in the variance-exploding
        form, x_0' = x − σ·ε' = x_0 + σ·√(1 − ᾱ)·g, where √(1 − ᾱ) = σ/√(1 + σ²). The classifier
        sees x_t = √ᾱ·x, whatever the model's own parameterisation.
        """
        sigma = torch.as_tensor(sigma, dtype=torch.float64)
        x_t = x * per_sample(vp_scale(sigma), x)
        time = self.schedule.network_time(sigma).to(device=x.device, dtype=torch.float32)
        grad = self.gradient(x_t, time)
        if grad is None:
            return x0
        return x0 + per_sample(sigma * sigma * vp_scale(sigma), x0) * grad.to(x0.dtype)


def build(scale: float, interval: tuple[float, float], context) -> ClassifierGuidance:
    """The registry's builder: the context's classifier towards its labels, on its schedule."""
    if context.classifier is None or context.labels is None:
        raise UsageError("classifier guidance needs a classifier and target labels")
    return ClassifierGuidance(scale=scale, interval=interval, classifier=context.classifier, labels=context.labels,
                              schedule=context.classifier_schedule)
