"""Writing files so that a crash never leaves a half-written one: temp file + rename."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from adm.core.errors import UsageError

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
_ATTEMPTS = 100


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` in one step.

    The temporary file lives in the same directory, so ``os.replace`` is an atomic rename on
    POSIX and Windows. On any exception the temporary file is removed and ``path`` is untouched.

    The file ends with the permissions an ordinary ``open(path, "w")`` would have left: those of
    the file it replaces, or for a new file ``0o666`` less the umask (and the folder's default
    ACL). ``tempfile.mkstemp`` would make every result ``0600``, unreadable to collaborators on
    shared storage. The temporary file is created with mode ``0o666`` so the kernel applies the
    umask itself (reading the umask would mean setting it, a race with other threads), and the
    mode is reasserted before the rename in case the writer replaced the temporary file.

    An ``OSError`` about the temporary file, or one that names no file at all (a writer's
    ``write()`` on a full disk), is re-raised naming ``path``: the user never typed the temporary
    name, and "No space left on device" alone does not say which write failed. This is the one
    place every writer's OS failures get their file name.
    """
    path = Path(path)
    make_folder(path.parent, path)
    tmp, mode = _create_beside(path)
    try:
        yield tmp
        _fsync(tmp)  # the data is on disk before the name points at it
        _restore_mode(tmp, mode)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(err, OSError) and _about(err, tmp):
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


def _about(err: OSError, tmp: Path) -> bool:
    """Whether ``err`` is the failure of a write to ``tmp``: it names ``tmp``, or no file (with an
    errno: an ``OSError`` without one is a message, not a system call's failure)."""
    if err.filename is None:
        return err.errno is not None
    return os.fsdecode(err.filename) == str(tmp)


def make_folder(folder: str | os.PathLike, target: str | os.PathLike | None = None) -> Path:
    """``mkdir -p folder``; a file in the way is a usage error naming what was to be written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise UsageError(
            f"cannot write {target or folder}: a part of {folder} is a file, not a folder",
            "choose an output path inside a folder",
        ) from None
    return folder


def _create_beside(path: Path) -> tuple[Path, int]:
    """Create an empty, unique temporary file next to ``path``; returns it and the final mode."""
    for _ in range(_ATTEMPTS):
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, _CREATE_FLAGS, 0o666)
        except FileExistsError:
            continue
        except OSError as err:  # report the file the user named, not our temporary name
            raise OSError(err.errno, err.strerror, str(path)) from None
        try:
            created = stat.S_IMODE(os.fstat(fd).st_mode)
        finally:
            os.close(fd)
        try:
            return tmp, stat.S_IMODE(path.stat().st_mode)  # open("w") keeps an existing file's mode
        except OSError:
            return tmp, created
    raise OSError(f"could not create a temporary file beside {path}")


def _restore_mode(tmp: Path, mode: int) -> None:
    if stat.S_IMODE(os.stat(tmp).st_mode) != mode:
        # A file system without POSIX modes (some network mounts) refuses chmod: the data matters more.
        with contextlib.suppress(NotImplementedError, PermissionError):
            os.chmod(tmp, mode)


def _fsync(path: str | os.PathLike) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json_atomic(path: str | os.PathLike, document: Any, *, indent: int | None = 2, sort_keys: bool = False) -> None:
    """``document`` as strict JSON: a NaN or infinity is refused (``ValueError``) rather than written
    as ``NaN``/``Infinity``, which Python reads but JSON parsers (jq, browsers, other languages) do
    not. The settings are validated finite at the edge (``adm.core.validation``); this is the last
    guard."""
    write_text_atomic(path, json.dumps(document, indent=indent, sort_keys=sort_keys, allow_nan=False) + "\n")
