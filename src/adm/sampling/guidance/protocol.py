"""Guidance as a wrapper around the model function, whatever the method.

dpm-solver's ``model_wrapper`` is the shape: a guided model is the model with something wrapped
around it, and every sampler samples the wrapped one. Two kinds of wrapper cover the methods in
use on ADM-family networks:

* ``OutputGuidance`` mixes the network's raw outputs, F̃ = F + w·(F − F_weak), on the mean
  channels (a learned variance is the strong prediction's). Classifier-free guidance (F_weak: the
  same network without the label) and autoguidance (F_weak: a weaker network) are this kind.
  Mixing raw outputs is mixing ε (or x̂₀, or v: at fixed x and σ they are affine in one another),
  so the original's ``ddpm``/``ddim`` chains run exactly on the guided ε.
* ``ScoreGuidance`` adds s·∇ log p(y | x_t) (a classifier's): to x̂₀ in score form in continuous
  time, as the mean or score shift of the original's chains.

Each method has its own scale and interval (lo ≤ τ/T ≤ hi, Kynkäänniemi et al. 2024): outside it
the extra networks are not run. They compose: the output kinds nest (each wraps the model the
previous one made), the score kinds add. A new method is one subclass (and, to be named on the
command line, a ``GuidanceSpec`` in ``adm.sampling.guidance.registry``).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from adm.sampling.choices import check_interval

Tensor = torch.Tensor
ModelFn = Callable[..., Tensor]
FractionFn = Callable[[Tensor], Tensor]  # network time → τ/T (float64), from the model's schedule


def within(fraction: Tensor, interval: tuple[float, float]) -> Tensor:
    """Where lo ≤ τ/T ≤ hi (with the float slack the grids need)."""
    lo, hi = interval
    return (fraction >= lo - 1e-9) & (fraction <= hi + 1e-9)


@dataclass(frozen=True)
class Guidance(ABC):
    """One guidance method at one scale, active on ``interval`` (fractions of the schedule's T)."""

    name: ClassVar[str]
    scale: float
    interval: tuple[float, float] = (0.0, 1.0)

    def __post_init__(self):
        check_interval(self.interval)


@dataclass(frozen=True)
class OutputGuidance(Guidance):
    """F̃ = F + w·(F − F_weak) on the mean channels; subclasses say what F_weak is."""

    @abstractmethod
    def weak(self, network: ModelFn, x_in: Tensor, time: Tensor, kwargs: Mapping[str, Any]) -> Tensor:
        """The weaker prediction at the same input (a raw output shaped like the network's)."""

    def wrap(self, network: ModelFn, fraction: FractionFn) -> ModelFn:
        """``network`` guided by this method (the weaker prediction is only made where it is active)."""

        def guided(x_in: Tensor, time: Tensor, **kwargs) -> Tensor:
            strong = network(x_in, time, **kwargs)
            active = within(fraction(time), self.interval).to(strong.device)
            if self.scale == 0 or not bool(active.any()):
                return strong
            weak = self.weak(network, x_in, time, kwargs)
            return mix(strong, weak, self.scale, x_in.shape[1], active)

        return guided


def mix(strong: Tensor, weak: Tensor, scale: float, channels: int, active: Tensor) -> Tensor:
    """strong + scale·(strong − weak) on the first ``channels`` (the mean part), where ``active``."""
    mean = strong[:, :channels].float()
    guided = mean + scale * (mean - weak[:, :channels].float())
    if not bool(active.all()):
        guided = torch.where(active.view(-1, *([1] * (mean.ndim - 1))), guided, mean)
    guided = guided.to(strong.dtype)
    return torch.cat([guided, strong[:, channels:]], dim=1) if strong.shape[1] > channels else guided


@dataclass(frozen=True)
class ScoreGuidance(Guidance):
    """s·∇ log p(· | x_t) of some model at ADM's x_t; applied by the denoiser and the chains."""

    @abstractmethod
    def gradient(self, x_t: Tensor, time: Tensor, **kwargs) -> Tensor | None:
        """The scaled gradient at x_t and the model's network ``time``, or None where inactive."""

    @abstractmethod
    def shift_denoised(self, x0: Tensor, x: Tensor, sigma: Tensor) -> Tensor:
        """x̂₀ guided in score form at x = x_0 + σ·ε."""


@dataclass(frozen=True)
class GuidanceContext:
    """What a method may be built from: the run's labels, the guiding classifier and the schedule it
    reads time on, the weaker guide network, the model's null label (None: it has none)."""

    labels: Tensor | None = None
    classifier: ModelFn | None = None
    classifier_schedule: Any = None
    guide: ModelFn | None = None
    null_label: int | None = None


@dataclass(frozen=True)
class Guided:
    """A network with its guidance: ``network`` is the model with every output guidance wrapped
    around it, ``score`` the score guidances (what ``Denoiser`` and the chains apply)."""

    network: ModelFn
    score: tuple[ScoreGuidance, ...] = field(default_factory=tuple)

    @classmethod
    def make(cls, network: ModelFn, guidance: tuple[Guidance, ...], fraction: FractionFn) -> Guided:
        for method in guidance:
            if isinstance(method, OutputGuidance):
                network = method.wrap(network, fraction)
            elif not isinstance(method, ScoreGuidance):
                raise TypeError(f"{type(method).__name__} is neither an OutputGuidance nor a ScoreGuidance")
        return cls(network, tuple(m for m in guidance if isinstance(m, ScoreGuidance)))

    def cond_fn(self) -> Callable[..., Tensor | None] | None:
        """The chains' ``cond_fn``: the sum of the score guidances' gradients (None when there are none)."""
        if not self.score:
            return None

        def gradient(x_t: Tensor, time: Tensor, **kwargs) -> Tensor | None:
            total = None
            for method in self.score:
                grad = method.gradient(x_t, time)
                if grad is not None:
                    total = grad if total is None else total + grad
            return total

        return gradient
