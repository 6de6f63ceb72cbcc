"""Reading and writing checkpoints safely, and explaining a checkpoint that does not fit.

Checkpoint files are untrusted: ``.pt`` files are opened with ``torch.load(weights_only=True)``,
which refuses pickled code, and ``.safetensors`` cannot hold code at all. When a state_dict does
not fit the chosen architecture, the error names the differing tensors and the presets it *does*
fit, instead of PyTorch's wall of missing keys (guided-diffusion#8).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from adm.errors import CheckpointError
from adm.fileio import atomic_path

StateDict = dict[str, torch.Tensor]
Signature = dict[str, tuple[int, ...]]


def load_state_dict(path: str | Path) -> StateDict:
    """A plain state_dict of tensors from a ``.pt`` / ``.pth`` or ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path} is not a readable safetensors file ({err})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():
            raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (corrupt or not a torch.save file)") from None
        raise CheckpointError(
            f"refusing to load {path}: it contains pickled Python objects, not only tensors",
            "adm loads plain state_dicts only; re-save the weights from trusted code with torch.save(model.state_dict())",
        ) from None
    except (RuntimeError, EOFError, OSError) as err:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint ({err})") from None
    return _as_state_dict(obj, path)


def _as_state_dict(obj: object, path: Path) -> StateDict:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict")
    if "param_groups" in obj and "state" in obj:
        raise CheckpointError(
            f"{path} is an optimizer state (opt*.pt), not model weights",
            "use the model*.pt or ema_*.pt file of the same step",
        )
    bad = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path} is not a plain state_dict (entry {bad[0]!r} is not a tensor)")
    return dict(obj)


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write atomically; ``.safetensors`` by suffix, otherwise ``torch.save`` (the original's format)."""
    path = Path(path)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    with atomic_path(path) as tmp:
        if path.suffix == ".safetensors":
            save_file(tensors, str(tmp), metadata=metadata)
        else:
            torch.save(tensors, tmp)
    return path


def convert(src: str | Path, dst: str | Path) -> Path:
    """Re-save a checkpoint in another format (``.pt`` ↔ ``.safetensors``), tensors unchanged."""
    return save_state_dict(load_state_dict(src), dst)


def signature(state: Mapping[str, torch.Tensor] | nn.Module) -> Signature:
    """Key → shape, the part of a state_dict that decides whether it fits an architecture."""
    items = state.state_dict() if isinstance(state, nn.Module) else state
    return {k: tuple(v.shape) for k, v in items.items()}


def describe_mismatch(expected: Signature, got: Signature, limit: int = 4) -> str:
    """A short account of how two signatures differ (missing, unexpected, shape)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} {list(got[k])} vs {list(expected[k])}" for k in expected if k in got and got[k] != expected[k]]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)


def load_into(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    what: str = "checkpoint",
    candidates: Iterable[tuple[str, Signature]] = (),
) -> nn.Module:
    """Load strictly; on a mismatch explain it and name the candidates the checkpoint does fit."""
    expected, got = signature(module), signature(state_dict)
    if expected != got:
        fits = [name for name, sig in candidates if sig == got]
        hint = f"it fits: {', '.join(fits)}" if fits else "check the preset or --model-flags it was trained with"
        raise CheckpointError(f"{what} does not fit the chosen architecture ({describe_mismatch(expected, got)})", hint)
    on_meta = any(p.is_meta for p in module.parameters())
    if on_meta:  # assign=True keeps the file's tensors: give them the network's dtypes (fp16 files → fp32)
        dtypes = {k: v.dtype for k, v in module.state_dict().items()}
        state_dict = {k: v.to(dtypes[k]) for k, v in state_dict.items()}
    module.load_state_dict(state_dict, strict=True, assign=on_meta)
    return module
