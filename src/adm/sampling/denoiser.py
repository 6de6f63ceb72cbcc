"""The one adapter between a network and the diffusion maths.

``Denoiser`` turns ``model(x, timesteps, **kwargs) -> raw output`` into a reverse-step
``Prediction`` at a chain index. It is the only place that maps chain indices to the timesteps
the network was trained with (respacing, rescaling) and that reads the raw output's channels, so
samplers never learn which parameterisation or respacing is in use.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from adm.diffusion.gaussian import Prediction, p_mean_variance
from adm.diffusion.process import GaussianProcess, Parameterization

ModelFn = Callable[..., torch.Tensor]


@dataclass
class Denoiser:
    """A network bound to a diffusion process and its output parameterisation.

    ``model`` is called as ``model(x, process.model_timesteps(t), **model_kwargs)``;
    ``clip_denoised`` clamps the x_0 estimate to [-1, 1] (after ``denoised_fn``, if any).
    """

    model: ModelFn
    process: GaussianProcess
    param: Parameterization
    model_kwargs: dict = field(default_factory=dict)
    clip_denoised: bool = True
    denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> tuple[Prediction, torch.Tensor]:
        """(prediction, raw model output) at chain indices ``t`` ([B] int64)."""
        output = self.model(x, self.process.model_timesteps(t), **self.model_kwargs)
        prediction = p_mean_variance(
            self.process,
            self.param,
            output,
            x,
            t,
            clip_denoised=self.clip_denoised,
            denoised_fn=self.denoised_fn,
        )
        return prediction, output
