"""A cache of reference features, so re-evaluating against the same reference skips its images.

Entries live in ``<adm cache root>/evaluate/`` (``$ADM_HOME``, else the user cache folder) as small
npz files named by a key over: the protocol version, the reference (for a file: size, modification
time and the sha256 of its first MiB, which holds the npy headers; for a folder: every image's name,
size and modification time) and the Inception weights file (the same three). Changing either file
makes a new key; stale entries are never read. A broken entry counts as missing.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np

from adm.core.fileio import atomic_path
from adm.data.images import ImageCollection
from adm.hub.cache import cache_root

PROTOCOL = "adm-evaluate-1"  # bump when the features or their layout change
HEAD_BYTES = 1 << 20


def _file_identity(path: Path) -> str:
    st = path.stat()
    with open(path, "rb") as f:
        head = hashlib.sha256(f.read(HEAD_BYTES)).hexdigest()
    return f"{st.st_size}:{st.st_mtime_ns}:{head}"


def _folder_identity(images: ImageCollection) -> str:
    digest = hashlib.sha256()
    for file in images.files:
        st = file.stat()
        digest.update(f"{file.relative_to(images.path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def cache_key(reference: Path, images: ImageCollection | None, weights: Path) -> str:
    parts = [PROTOCOL]
    if images is not None and not images.is_npz:
        parts.append("folder:" + _folder_identity(images))
    else:
        parts.append("file:" + _file_identity(reference))
    parts.append("weights:" + _file_identity(weights))
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def cache_file(
    reference: Path,
    images: ImageCollection | None,
    weights: Path,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    stem = reference.name.removesuffix(".npz") or "reference"
    return (
        cache_root(cache_dir) / "evaluate" / f"{stem}-{cache_key(reference, images, weights)}.npz"
    )


def load(path: Path) -> dict[str, np.ndarray] | None:
    """The arrays of a cache entry, or None when there is none (or it is unreadable)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None


def save(path: Path, arrays: dict[str, np.ndarray]) -> str | None:
    """Write a cache entry atomically; a note (not an error) when the cache is not writable."""
    try:
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, **arrays)
    except OSError as err:
        return f"could not write the reference feature cache {path}: {err.strerror or err}"
    return None
