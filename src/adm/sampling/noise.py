"""Noise sources: where the samplers' Gaussian noise comes from.

A noise source is any callable with ``torch.randn_like``'s signature, ``noise(x) -> Tensor``,
called once per sampler step (in loop order). Three are provided:

* ``torch.randn_like`` — the global RNG, as guided-diffusion does (not reproducible per image);
* ``PerSampleNoise`` — one ``torch.Generator`` per sample, so sample i depends only on its own
  seed and never on the batch it was drawn in (EDM's ``StackedRandomGenerator``);
* ``ReplayNoise`` — pre-recorded per-step tensors, for parity tests against the original.

Every sampler and chain step that draws noise takes its source as a required keyword: there is
no default, so the global RNG is used only where a caller passes ``torch.randn_like`` on purpose
(``adm.compat``, which reproduces the original's calls).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from adm.core.errors import UsageError

NoiseSource = Callable[[torch.Tensor], torch.Tensor]


class PerSampleNoise:
    """Draws sample i's noise from ``generators[i]``.

    Noise is generated on each generator's device and then moved to ``x``'s device, so CPU
    generators give the same images on any accelerator.
    """

    def __init__(self, generators: Sequence[torch.Generator]):
        if not generators:
            raise UsageError("PerSampleNoise needs at least one generator")
        self.generators = list(generators)

    @classmethod
    def from_seeds(cls, seeds: Sequence[int], device: str | torch.device = "cpu") -> PerSampleNoise:
        """One generator per seed, seeded with ``torch.Generator.manual_seed``."""
        return cls([torch.Generator(device=device).manual_seed(int(s)) for s in seeds])

    def randn(
        self,
        shape: Sequence[int],
        *,
        device: str | torch.device | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """A [len(generators), *shape[1:]] standard-normal tensor (e.g. the initial x_T)."""
        if shape[0] != len(self.generators):
            raise UsageError(
                f"batch of {shape[0]} samples but {len(self.generators)} noise generators"
            )
        per_sample = tuple(shape[1:])
        draws = [
            torch.randn(per_sample, generator=g, device=g.device, dtype=dtype)
            for g in self.generators
        ]
        out = torch.stack(draws)
        return out.to(device) if device is not None else out

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.randn(x.shape, device=x.device, dtype=x.dtype)


class ReplayNoise:
    """Returns ``step_noise[k]`` on the k-th call: recorded noise, in loop order."""

    def __init__(self, step_noise: torch.Tensor | Sequence[torch.Tensor]):
        self.step_noise = step_noise
        self.calls = 0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.calls >= len(self.step_noise):
            raise UsageError(f"replay noise exhausted after {len(self.step_noise)} steps")
        noise = self.step_noise[self.calls]
        self.calls += 1
        if noise.shape != x.shape:
            raise UsageError(
                f"recorded noise has shape {tuple(noise.shape)}, sample has {tuple(x.shape)}"
            )
        return noise.to(device=x.device, dtype=x.dtype)
