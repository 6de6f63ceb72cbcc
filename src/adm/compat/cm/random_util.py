"""``cm.random_util``: consistency_models' noise generators, which ``karras_sample`` draws from.

A generator has ``randn(*shape, dtype=, device=)``, ``randn_like(x)`` and ``randint(low, high, size)``:

* ``"dummy"``: the global torch RNG (``DummyGenerator``);
* ``"determ"``: ``DeterministicGenerator(num_samples, seed)``: one seeded RNG per device kind; each
  draw makes the noise of all ``num_samples`` samples and keeps this rank's rows (sample
  ``done_samples + rank + k * world_size``), so sample i's first noise does not depend on the
  batch size or the number of ranks;
* ``"determ-indiv"``: ``DeterministicIndividualGenerator(num_samples, seed)``: one RNG per sample,
  seeded ``i + num_samples * seed`` (adm's ``PerSampleNoise`` draws from them).

The semantics are the reference's, so a generator passed to ``adm.compat.cm.karras_sample`` gives
the reference's images; the reference's "distributed not initialised" print is left out (the
library never prints).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from adm.core.errors import UsageError
from adm.sampling.noise import PerSampleNoise

GENERATORS = ("dummy", "determ", "determ-indiv")


def get_generator(generator: str, num_samples: int = 0, seed: int = 0):
    """The generator named ``generator`` (``GENERATORS``)."""
    if generator == "dummy":
        return DummyGenerator()
    if generator == "determ":
        return DeterministicGenerator(num_samples, seed)
    if generator == "determ-indiv":
        return DeterministicIndividualGenerator(num_samples, seed)
    raise UsageError(f"unknown generator {generator!r}", f"choose one of {', '.join(GENERATORS)}")


class DummyGenerator:
    """The global torch RNG behind the generator interface."""

    def randn(self, *args, **kwargs):
        return torch.randn(*args, **kwargs)

    def randint(self, *args, **kwargs):
        return torch.randint(*args, **kwargs)

    def randn_like(self, *args, **kwargs):
        return torch.randn_like(*args, **kwargs)


def _device_kind(device) -> str:
    return torch.device(device).type


def _on(device):
    """``device``, the CPU for None (karras_sample passes its ``device=None``; the reference fails there)."""
    return "cpu" if device is None else device


class _Deterministic:
    """What both deterministic generators share: this rank's sample indices and the seed."""

    def __init__(self, num_samples: int, seed: int = 0):
        initialized = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if initialized else 0
        self.world_size = dist.get_world_size() if initialized else 1
        self.num_samples = num_samples
        self.done_samples = 0
        self.seed = seed
        self._seeded_with = seed  # what set_seed last used (set_seed does not change self.seed)

    def sample_indices(self, batch: int) -> torch.Tensor:
        """Indices of the samples this rank draws next, capped at the last sample."""
        start = self.done_samples + self.rank
        indices = torch.arange(start, self.done_samples + self.world_size * batch, self.world_size)
        indices = indices.clamp(0, max(self.num_samples - 1, 0))
        if len(indices) != batch:
            raise UsageError(f"rank {self.rank} of {self.world_size} cannot draw a batch of {batch} samples")
        return indices

    def randn_like(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.randn(*tensor.size(), dtype=tensor.dtype, device=tensor.device)

    def get_seed(self) -> int:
        return self.seed


class DeterministicGenerator(_Deterministic):
    """One RNG (per device kind) that draws all ``num_samples`` samples' noise at every call."""

    def __init__(self, num_samples: int, seed: int = 0):
        super().__init__(num_samples, seed)
        self._rngs: dict[str, torch.Generator] = {}

    def get_generator(self, device) -> torch.Generator:
        kind = _device_kind(device)
        if kind not in self._rngs:
            self._rngs[kind] = torch.Generator(device=device).manual_seed(self._seeded_with)
        return self._rngs[kind]

    def _global_size(self, size) -> tuple[int, ...]:
        return (self.num_samples, *size[1:])

    def randn(self, *size, dtype=torch.float, device="cpu") -> torch.Tensor:
        indices, device = self.sample_indices(int(size[0])), _on(device)
        every = torch.randn(*self._global_size(size), generator=self.get_generator(device), dtype=dtype, device=device)
        return every[indices]

    def randint(self, low, high, size, dtype=torch.long, device="cpu") -> torch.Tensor:
        indices, device = self.sample_indices(int(size[0])), _on(device)
        every = torch.randint(low, high, self._global_size(size), generator=self.get_generator(device), dtype=dtype,
                              device=device)
        return every[indices]

    def set_done_samples(self, done_samples: int) -> None:
        """Skip to sample ``done_samples`` (the RNG restarts from the seed)."""
        self.done_samples = done_samples
        self.set_seed(self.seed)

    def set_seed(self, seed: int) -> None:
        self._seeded_with = seed
        for rng in self._rngs.values():
            rng.manual_seed(seed)


class DeterministicIndividualGenerator(_Deterministic):
    """One RNG per sample, seeded ``i + num_samples * seed``."""

    def __init__(self, num_samples: int, seed: int = 0):
        super().__init__(num_samples, seed)
        self._rngs: dict[str, list[torch.Generator]] = {}

    def get_generator(self, device) -> list[torch.Generator]:
        kind = _device_kind(device)
        if kind not in self._rngs:
            self._rngs[kind] = [torch.Generator(device=device) for _ in range(self.num_samples)]
            self._seed(self._rngs[kind], self._seeded_with)
        return self._rngs[kind]

    def _noise(self, size, device) -> PerSampleNoise:
        rngs = self.get_generator(device)
        return PerSampleNoise([rngs[i] for i in self.sample_indices(int(size[0]))])

    def randn(self, *size, dtype=torch.float, device="cpu") -> torch.Tensor:
        device = _on(device)
        return self._noise(size, device).randn(size, device=device, dtype=dtype)

    def randint(self, low, high, size, dtype=torch.long, device="cpu") -> torch.Tensor:
        device = _on(device)
        rngs = self.get_generator(device)
        draws = [torch.randint(low, high, (1, *size[1:]), generator=rngs[i], dtype=dtype, device=device)
                 for i in self.sample_indices(int(size[0]))]
        return torch.cat(draws)

    def set_done_samples(self, done_samples: int) -> None:
        """Skip to sample ``done_samples`` (each sample's RNG keeps its state)."""
        self.done_samples = done_samples

    def set_seed(self, seed: int) -> None:
        self._seeded_with = seed
        for rngs in self._rngs.values():
            self._seed(rngs, seed)

    def _seed(self, rngs: list[torch.Generator], seed: int) -> None:
        for i, rng in enumerate(rngs):
            rng.manual_seed(i + self.num_samples * seed)


__all__ = [
    "DeterministicGenerator", "DeterministicIndividualGenerator", "DummyGenerator", "GENERATORS", "get_generator",
]
