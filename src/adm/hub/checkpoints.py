"""Reading and writing checkpoints safely, and explaining a checkpoint that does not fit.

Checkpoint files are untrusted: ``.pt`` files are opened with ``torch.load(weights_only=True)``,
which refuses pickled code, and ``.safetensors`` cannot hold code at all. When a state_dict does
not fit the chosen architecture, the error names the differing tensors and the presets it *does*
fit, instead of PyTorch's wall of missing keys (guided-diffusion#8).
"""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from adm.core.errors import CheckpointError, StorageError, one_line
from adm.core.fileio import atomic_path

StateDict = dict[str, torch.Tensor]
Signature = dict[str, tuple[int, ...]]

# consistency_models stores the attention blocks' 1x1 projections as Conv2d weights
# [C_out, C_in, 1, 1] where adm (and guided-diffusion) has Conv1d weights [C_out, C_in, 1]: the
# same numbers. AttentionBlock's load hook (adm.models.attention) squeezes them when loading; the
# checks here compare, and `adm convert` writes, the 3-D form.
POINTWISE_WEIGHTS = ("qkv.weight", "proj_out.weight")


def _format(path: Path, fmt: str | None) -> str:
    """``"safetensors"`` or ``"pt"``: given, or by the suffix (a cache's ``.part`` / ``.tmp`` files
    carry no telling suffix, so their callers pass the final name's format)."""
    return fmt or ("safetensors" if path.suffix == ".safetensors" else "pt")


def load_state_dict(path: str | Path, *, fmt: str | None = None, mmap: bool = False, shown: str | None = None) -> StateDict:
    """A plain state_dict of tensors from a ``.pt`` / ``.pth`` or ``.safetensors`` file.

    ``mmap`` maps a ``.pt`` file's tensors instead of reading them (for a look at keys and
    shapes); files in the legacy (pre-zip) format cannot be mapped and are read. ``shown`` is
    what messages call the file (a temporary copy's name would mean nothing to the user).
    """
    path = Path(path)
    shown = shown or str(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {shown} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {shown} is empty (0 bytes)", "an interrupted copy or download? fetch it again")
    if _format(path, fmt) == "safetensors":
        try:
            return load_file(str(path))
        except Exception as err:  # any failure to read untrusted bytes is the file's fault
            raise CheckpointError(f"{shown} is not a readable safetensors file ({one_line(err)})") from None
    try:
        with warnings.catch_warnings():  # torch's warnings about a foreign pickle's protocol: not a line for users
            warnings.simplefilter("ignore")
            obj = _torch_load(path, mmap)
    except pickle.UnpicklingError as err:
        if "global" not in str(err).lower():
            raise CheckpointError(f"{shown} is not a readable PyTorch checkpoint (corrupt or not a torch.save file)") from None
        raise CheckpointError(
            f"refusing to load {shown}: it contains pickled Python objects, not only tensors",
            "adm loads plain state_dicts only; re-save the weights from trusted code with torch.save(model.state_dict())",
        ) from None
    except Exception as err:  # see _unreadable
        raise CheckpointError(f"{shown} is not a readable PyTorch checkpoint ({_unreadable(err)})") from None
    return _as_state_dict(obj, shown)


def _torch_load(path: Path, mmap: bool) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except RuntimeError as err:
        if not mmap or "mmap" not in str(err):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)


def _unreadable(err: Exception) -> str:
    """Why torch could not read a file, in words that do not mislead.

    Untrusted bytes fail in the unpickler in any way at all: a few bytes of text that happen to
    be pickle opcodes end in ``KeyError: 101`` (a memo lookup), others in ``IndexError``,
    ``TypeError``, ``struct.error``... none of which is a bug in adm, so every failure is the
    file's. torch's own words for a file that is no zip checkpoint ("legacy .tar format", a bare
    memo key) say nothing to a user.
    """
    if isinstance(err, (RuntimeError, EOFError, OSError, ValueError)) and str(err).strip() and "legacy .tar" not in str(err):
        return one_line(err)
    return "corrupt or not a torch.save file"


def read_signature(path: str | Path, *, fmt: str | None = None, shown: str | None = None) -> Signature:
    """Key → shape of a checkpoint, without reading its tensors (safetensors header, mapped .pt).

    The same safety rules as ``load_state_dict``: pickled code is refused, never executed.
    """
    path = Path(path)
    if _format(path, fmt) == "safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: network_shape(k, f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        except Exception as err:  # as in load_state_dict
            raise CheckpointError(f"{shown or path} is not a readable safetensors file ({one_line(err)})") from None
    return signature(load_state_dict(path, fmt=fmt, mmap=True, shown=shown))


def network_signature(flags) -> Signature:
    """The key/shape signature of the network a flag set builds (on the meta device: no memory)."""
    from adm.spec.factory import build_network

    return signature(build_network(flags, device="meta"))


def _as_state_dict(obj: object, path: str) -> StateDict:
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
            _save_safetensors(tensors, tmp, metadata)
        else:
            save_torch(tensors, tmp)
    return path


def save_torch(obj: object, file: Path) -> None:
    """``torch.save`` into ``file`` (an ``atomic_path`` temporary), with an OS failure raised as the
    ``OSError`` it is.

    Given a path, torch reports a full disk as ``RuntimeError: [enforce fail at
    inline_container.cc] unexpected pos ...``; writing through a Python file object keeps the
    ``OSError`` (ENOSPC, EACCES, ...) as the error's context, which is re-raised here. Naming the
    file the user asked for is ``atomic_path``'s job, as for every other writer.
    """
    try:
        with open(file, "wb") as fh:
            torch.save(obj, fh)
    except RuntimeError as err:
        cause = err.__cause__ or err.__context__
        if isinstance(cause, OSError):
            raise OSError(cause.errno, cause.strerror, str(file)) from None
        raise


_OS_ERROR = re.compile(r"os error (\d+)")


def _save_safetensors(tensors: StateDict, file: Path, metadata: dict[str, str] | None) -> None:
    """``save_file``, with its I/O failures (a ``SafetensorError`` naming "os error 28") raised as
    ``OSError``s, which the CLI reports in one line like any other write failure."""
    try:
        save_file(tensors, str(file), metadata=metadata)
    except SafetensorError as err:
        code = _OS_ERROR.search(str(err))
        if code is None:
            raise StorageError(f"cannot write {file}: {one_line(err)}") from None
        raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(file)) from None


def convert(src: str | Path, dst: str | Path) -> Path:
    """Re-save a checkpoint in another format (``.pt`` ↔ ``.safetensors``), values unchanged.

    A consistency_models checkpoint comes out in adm's form: its 4-D attention projections are
    written 3-D (``network_form``), so the file loads into any guided-diffusion-style U-Net.
    """
    return save_state_dict(network_form(load_state_dict(src)), dst)


def is_pointwise(key: str, shape: Iterable[int]) -> bool:
    """Whether ``key`` is an attention projection stored 4-D, as consistency_models stores them."""
    shape = tuple(shape)
    name = key.rsplit(".", 2)[-2:]
    return len(shape) == 4 and shape[-2:] == (1, 1) and ".".join(name) in POINTWISE_WEIGHTS


def network_shape(key: str, shape: Iterable[int]) -> tuple[int, ...]:
    """The shape of the network's parameter that a file's tensor ``key`` of ``shape`` loads into."""
    shape = tuple(shape)
    return shape[:-1] if is_pointwise(key, shape) else shape


def network_form(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """The state_dict with consistency_models' 4-D attention projections squeezed to adm's 3-D."""
    return {k: v.squeeze(-1) if is_pointwise(k, v.shape) else v for k, v in state_dict.items()}


def signature(state: Mapping[str, torch.Tensor] | nn.Module) -> Signature:
    """Key → shape, the part of a state_dict that decides whether it fits an architecture.

    Shapes are the network's (``network_shape``): a consistency_models file fits the network its
    flags build.
    """
    items = state.state_dict() if isinstance(state, nn.Module) else state
    return {k: network_shape(k, v.shape) for k, v in items.items()}


def describe_mismatch(expected: Signature, got: Signature, limit: int = 4) -> str:
    """A short account of how a file's signature (``got``) differs from the network's (``expected``):
    keys missing from the file, keys the network lacks, and shapes (the file's, then the network's)."""
    missing = [k for k in expected if k not in got]
    unexpected = [k for k in got if k not in expected]
    shapes = [f"{k} file {list(got[k])}, network {list(expected[k])}" for k in expected if k in got and got[k] != expected[k]]
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
