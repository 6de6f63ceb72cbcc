"""Classifier-free guidance (Ho & Salimans 2022) and autoguidance (Karras et al. 2024).

Both extrapolate from a weaker prediction to the model's: F̃ = F + w·(F − F_weak), w = 0 unguided.
Classifier-free guidance's weaker prediction is the same network told "no class" (the null label
its training dropped labels to); autoguidance's is a weaker network with the same conditioning (a
smaller or less-trained model). Karras et al. write autoguidance as w·D₁ + (1 − w)·D₀ =
D₁ + (w − 1)·(D₁ − D₀): ``--autoguidance W`` is their w = W + 1 (``--autoguidance 1`` is w = 2).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from adm.core.errors import UsageError
from adm.sampling.guidance.protocol import GuidanceContext, ModelFn, OutputGuidance

Tensor = torch.Tensor


@dataclass(frozen=True, kw_only=True)
class ClassifierFree(OutputGuidance):
    """The same network without its label: y → ``null_label``."""

    null_label: int
    name: ClassVar[str] = "cfg"

    def weak(self, network: ModelFn, x_in: Tensor, time: Tensor, kwargs: Mapping[str, Any]) -> Tensor:
        y = kwargs["y"]
        return network(x_in, time, **{**kwargs, "y": torch.full_like(y, self.null_label)})


@dataclass(frozen=True, kw_only=True)
class Autoguidance(OutputGuidance):
    """A weaker network of the same conditioning, with the same parameterisation and schedule."""

    guide: Callable[..., Tensor]
    name: ClassVar[str] = "autoguidance"

    def weak(self, network: ModelFn, x_in: Tensor, time: Tensor, kwargs: Mapping[str, Any]) -> Tensor:
        return self.guide(x_in, time, **kwargs)


def build_cfg(scale: float, interval: tuple[float, float], context: GuidanceContext) -> ClassifierFree:
    if context.null_label is None:
        raise UsageError("classifier-free guidance needs a model trained with a null class (label dropout)",
                         "train one with `adm train --label-dropout 0.1`, or guide with --scale / --autoguidance")
    return ClassifierFree(scale=scale, interval=interval, null_label=context.null_label)


def build_autoguidance(scale: float, interval: tuple[float, float], context: GuidanceContext) -> Autoguidance:
    if context.guide is None:
        raise UsageError("autoguidance needs a guide model", "pass --guide-model (a preset, a run dir[@STEP] or a checkpoint)")
    return Autoguidance(scale=scale, interval=interval, guide=context.guide)
