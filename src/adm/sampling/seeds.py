"""Per-sample randomness and class plans: sample *i* of a run is a function of ``(seed, i)`` alone.

Its class label (when drawn at random), its initial noise and every step's noise come, in that
order, from a ``torch.Generator`` seeded with ``sample_seed(seed, i)``. Which batch, process or
restart it is drawn in does not matter, so a sharded, interrupted, multi-GPU run gives the same
images as one uninterrupted loop.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from adm.core.errors import UsageError


def sample_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for sample ``index`` of a run seeded with ``seed``."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generators_for(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(sample_seed(seed, i)) for i in indices]


def parse_classes(spec: str | int | Sequence[int], num_classes: int) -> str | list[int]:
    """``random``, ``balanced``, a comma list of ids, a file of ids, an id or a list of ids → a
    class plan (ids checked against ``num_classes``)."""
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        spec = [int(spec)]
    if not isinstance(spec, str):
        return _checked([int(i) for i in spec], num_classes)
    if spec in ("random", "balanced", "null"):
        return spec
    text = spec
    if not re.fullmatch(r"[-+\d,\s]+", spec):  # not a literal list (-1 is one, out of range): a file of ids
        try:
            text = Path(spec).read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise UsageError(f"--classes must be random, balanced, a comma list of class ids or a file of ids; "
                             f"cannot read {spec!r} ({err.__class__.__name__})") from None
    try:
        ids = [int(tok) for tok in text.replace(",", " ").split()]
    except ValueError:
        raise UsageError(f"--classes must be random, balanced, a comma list of class ids or a file of ids, got {spec!r}") from None
    return _checked(ids, num_classes)


def check_labels(labels: np.ndarray, num_classes: int, source: str, hint: str | None = None) -> None:
    """Refuse labels read from a file (``arr_1``) that the model has no class for: an embedding
    lookup or a classifier's log-softmax would otherwise fail deep in torch (or, for -1, quietly
    index the last class)."""
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if bad.size:
        raise UsageError(f"{source}: label {int(labels[bad[0]])} (image {int(bad[0])}) is out of range for a model of "
                         f"{num_classes} classes (0..{num_classes - 1})", hint)


def _checked(ids: list[int], num_classes: int) -> list[int]:
    if not ids:
        raise UsageError("--classes lists no class ids")
    bad = [i for i in ids if not 0 <= i < num_classes]
    if bad:
        raise UsageError(f"class id {bad[0]} is out of range for a model of {num_classes} classes (0..{num_classes - 1})")
    return ids


def labels_for(
    plan: str | list[int], indices: Sequence[int], num_classes: int, generators: Sequence[torch.Generator],
    null_label: int | None = None,
) -> torch.Tensor:
    """Labels of samples ``indices``: drawn per sample (random), cycled (balanced), from a list, or
    the model's null label for all (``null``: unconditional samples of a classifier-free-guidance model)."""
    if plan == "null":
        if null_label is None:
            raise UsageError("--classes null needs a model trained with a null class (adm train --label-dropout)")
        return torch.full((len(indices),), null_label, dtype=torch.long)
    if plan == "random":
        return torch.stack([torch.randint(num_classes, (), generator=g) for g in generators])
    if plan == "balanced":
        return torch.tensor([i % num_classes for i in indices], dtype=torch.long)
    return torch.tensor([plan[i % len(plan)] for i in indices], dtype=torch.long)
