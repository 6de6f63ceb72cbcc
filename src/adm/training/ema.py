"""Exponential moving averages of the weights, one float32 copy per rate.

``ema ← rate · ema + (1 − rate) · θ`` after every optimizer step that was taken (a skipped fp16
step updates nothing), on all parameters, as the original's ``update_ema``. An EMA's
``state_dict`` has the network's keys, so it loads wherever the model's does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn


class EMA:
    """EMA copies of ``module``'s parameters for each rate in ``rates``."""

    def __init__(self, module: nn.Module, rates: Iterable[float]):
        self.rates = tuple(float(r) for r in rates)
        self.names = [name for name, _ in module.named_parameters()]
        params = [p.detach() for p in module.parameters()]
        self.shadows = {rate: [p.clone().float() for p in params] for rate in self.rates}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        current = [p.detach().float() for p in module.parameters()]
        for rate, shadow in self.shadows.items():
            torch._foreach_mul_(shadow, rate)
            torch._foreach_add_(shadow, current, alpha=1.0 - rate)

    def state_dict(self, rate: float, module: nn.Module) -> dict[str, torch.Tensor]:
        """The network's state_dict with this rate's averaged parameters (buffers from ``module``)."""
        averaged = dict(zip(self.names, self.shadows[rate], strict=True))
        return {key: averaged.get(key, value).detach() for key, value in module.state_dict().items()}

    def load(self, rate: float, state: Mapping[str, torch.Tensor]) -> None:
        for name, shadow in zip(self.names, self.shadows[rate], strict=True):
            shadow.copy_(state[name])
