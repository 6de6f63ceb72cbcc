"""Counter-based randomness: every random draw of a run is a pure function of (seed, purpose, index).

Training draws per-sample randomness (data order, crop, flip, noise, timestep) from a seed
derived from the run seed and the sample's GLOBAL position in the data stream. Which rank or
micro-batch happens to process a sample therefore never changes what it sees, which is what
makes 1 process == K processes, micro-batching == full batch, and resume == uninterrupted.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed from a tuple of ints and strings (stable across processes and platforms)."""
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else struct.pack("<q", int(part)))
        h.update(b"\x00")
    return int.from_bytes(h.digest(), "little") >> 1


def uniform(*parts: int | str) -> float:
    """A float in [0, 1) from the same counter scheme (53 random bits)."""
    return (derive_seed(*parts) >> 10) / float(1 << 53)


def per_sample_normal(seeds: Sequence[int], shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """Standard normal noise ``[len(seeds), *shape]``; row i depends on ``seeds[i]`` alone.

    Generated on ``device`` with one reseeded generator (no host copy), so it is cheap on GPUs;
    the values differ between device types but are fixed for a given one.
    """
    out = torch.empty((len(seeds), *shape), device=device)
    generator = torch.Generator(device=device)
    for i, seed in enumerate(seeds):
        generator.manual_seed(int(seed))
        torch.randn(tuple(shape), generator=generator, device=device, out=out[i])
    return out
