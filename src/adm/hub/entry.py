"""One cache entry under its file lock: waiting for another process, a full check, installing a file.

Every writer of an entry holds its lock (``filelock``), so concurrent processes asking for the same
file fetch it once: the others wait, then find it in place. A file that fails its check is removed.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from adm.core.errors import DownloadStorageError, UsageError
from adm.hub.cache import (
    ProgressCallback,
    Record,
    expected_sha256,
    hash_matches,
    inspect_entry,
    lock_path,
    remove_entry,
    sha256_file,
    write_record,
)
from adm.hub.transfer import StatusCallback
from adm.presets.types import Artifact


@contextmanager
def locked(art: Artifact, path: Path, on_status: StatusCallback) -> Iterator[None]:
    """Hold the entry's file lock; tell the caller when another process has it first."""
    from filelock import FileLock, Timeout

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(
            f"cannot use the cache folder {path.parent}: a part of it is a file, not a folder",
            "pass --dir or set ADM_HOME to a folder",
        ) from None
    except OSError as err:
        raise DownloadStorageError(
            f"cannot create the cache folder {path.parent}: {err.strerror or err}",
            "pass --dir or set ADM_HOME to a writable folder",
        ) from None
    lock = FileLock(str(lock_path(path)))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        on_status(f"waiting for another adm process that is fetching {art.name}")
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def check_locked(
    art: Artifact, path: Path, on_progress: ProgressCallback | None, rehash: bool = False
) -> tuple[Literal["ok", "missing", "mismatch", "unverified"], Record | None, str | None]:
    """Full check of an entry (caller holds the lock). A file that fails is removed.

    Returns (status, record, actual sha256 when hashed).
    """
    state, record = inspect_entry(art, path)
    if state == "missing":
        return "missing", None, None
    if state == "ok" and not rehash:
        return "ok", record, None
    if state == "mismatch":
        remove_entry(path)
        return "mismatch", record, None
    expected = expected_sha256(art, record)
    if expected is None:
        return "unverified", None, None
    digest = sha256_file(path, on_progress)
    if not hash_matches(digest, expected):
        remove_entry(path)
        return "mismatch", record, digest
    if record is None:
        record = Record.for_file(art, path, digest, source="adopted")
    else:
        st = path.stat()
        record = dataclasses.replace(record, size=st.st_size, mtime_ns=st.st_mtime_ns)
    write_record(path, record)
    return "ok", record, digest


def settled(
    art: Artifact, path: Path, on_progress: ProgressCallback | None, on_status: StatusCallback
):
    """Quick look first; take the lock and check fully only when the quick look is not conclusive."""
    state, record = inspect_entry(art, path)
    if state in ("ok", "missing"):
        return state, record
    with locked(art, path, on_status):
        status, record, _ = check_locked(art, path, on_progress)
    return status, record


def install(art: Artifact, path: Path, staged: Path, digest: str, source: str) -> Record:
    """Record first, then rename: a file in place always has its record."""
    try:
        record = Record.for_file(art, staged, digest, source)
        write_record(path, record)
        os.replace(staged, path)
    except OSError as err:
        raise DownloadStorageError(
            f"cannot move {art.name} into the cache at {path}: {err.strerror or err}"
        ) from None
    return record
