"""Timestep samplers (the original's ``resample.py``): which chain indices a training batch sees.

A sampler holds weights ``w_t`` over the T chain indices; a batch draws ``t ~ w / sum(w)`` and
weights each sample's loss by ``1 / (T p_t)`` so that the expected loss is unchanged (importance
sampling). Draws take one uniform number per sample (inverse CDF), supplied by the caller from the
sample's own seed, so they do not depend on batch composition.

* ``uniform``: ``w_t = 1``.
* ``loss-second-moment``: uniform until every t has ``history`` recorded losses; then
  ``w_t ∝ sqrt(E[L_t^2])`` mixed with ``uniform_prob`` of the uniform distribution (Improved
  DDPM §3.3). It is updated with the losses of the whole GLOBAL batch, gathered from every rank
  and applied in stream order, so every rank keeps the same state whatever the world size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from adm.core.errors import UsageError


class UniformSampler:
    """``w_t = 1`` for every chain index."""

    def __init__(self, num_steps: int):
        self.num_steps = num_steps

    def weights(self) -> torch.Tensor:
        return torch.ones(self.num_steps, dtype=torch.float64)

    def sample(self, uniforms: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(t, weights)`` for uniforms in [0, 1): t int64 [N], weights float32 [N]."""
        probs = self.weights()
        probs = probs / probs.sum()
        cdf = torch.cumsum(probs, 0)
        u = torch.as_tensor(list(uniforms), dtype=torch.float64)
        t = torch.searchsorted(cdf, u, right=True).clamp_(max=self.num_steps - 1)
        weights = 1.0 / (self.num_steps * probs[t])
        return t, weights.float()

    @property
    def loss_aware(self) -> bool:
        return False

    def update(self, timesteps: Sequence[int], losses: Sequence[float]) -> None:
        """Record the losses of one global batch (no-op for samplers that ignore losses)."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class LossSecondMomentSampler(UniformSampler):
    """Importance sampling by the root mean square of the last ``history`` losses of each t."""

    def __init__(self, num_steps: int, history: int = 10, uniform_prob: float = 0.001):
        super().__init__(num_steps)
        self.history_per_term = history
        self.uniform_prob = uniform_prob
        self.history = torch.zeros(num_steps, history, dtype=torch.float64)
        self.counts = torch.zeros(num_steps, dtype=torch.int64)

    @property
    def loss_aware(self) -> bool:
        return True

    @property
    def warmed_up(self) -> bool:
        return bool((self.counts == self.history_per_term).all())

    def weights(self) -> torch.Tensor:
        if not self.warmed_up:
            return torch.ones(self.num_steps, dtype=torch.float64)
        weights = torch.sqrt((self.history**2).mean(dim=-1))
        weights = weights / weights.sum()
        return weights * (1 - self.uniform_prob) + self.uniform_prob / self.num_steps

    def update(self, timesteps: Sequence[int], losses: Sequence[float]) -> None:
        for t, loss in zip(timesteps, losses, strict=True):
            t = int(t)
            if self.counts[t] == self.history_per_term:
                self.history[t, :-1] = self.history[t, 1:].clone()
                self.history[t, -1] = float(loss)
            else:
                self.history[t, self.counts[t]] = float(loss)
                self.counts[t] += 1

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if tuple(state["history"].shape) != tuple(self.history.shape):
            raise UsageError("the saved timestep-sampler state does not fit this run's diffusion steps")
        self.history = state["history"].to(torch.float64).clone()
        self.counts = state["counts"].to(torch.int64).clone()


SAMPLERS = {"uniform": UniformSampler, "loss-second-moment": LossSecondMomentSampler}


def make_sampler(name: str, num_steps: int) -> UniformSampler:
    if name not in SAMPLERS:
        raise UsageError(f"unknown schedule sampler {name!r}", f"choose from {', '.join(SAMPLERS)}")
    return SAMPLERS[name](num_steps)
