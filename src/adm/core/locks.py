"""One writer at a time: an exclusive lock on a file that is removed when the lock is released.

``filelock`` (what the download cache uses) leaves its lock files in place on POSIX, by design:
removing one that another process is about to lock breaks the lock. The cache can keep them; an
output folder should not fill with them. Here the holder removes the file before releasing it, and
a process that acquires the lock checks that the name still points at the file it locked (a
previous holder may have removed it meanwhile); if not, it locks the new one. Where there is no
``fcntl`` (Windows), ``filelock``, which removes its file there, does the locking.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


@contextlib.contextmanager
def exclusive(path: str | os.PathLike, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the lock ``path`` for the block. When another process holds it, ``on_wait()`` is
    called once (it may raise to give up), then this one waits; a signal interrupts the wait."""
    path = Path(path)
    if fcntl is None:  # pragma: no cover - Windows
        with _filelock(path, on_wait):
            yield
        return
    fd = _acquire(path, on_wait)
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # while still holding it: a waiter sees the name gone and starts over
        os.close(fd)


def _acquire(path: Path, on_wait: Callable[[], None] | None) -> int:
    waited = False
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waited and on_wait is not None:
                    on_wait()
                waited = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            if _names(path, fd):
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # locked a file its holder had removed: lock the one the name points at now


def _names(path: Path, fd: int) -> bool:
    try:
        return os.path.samestat(os.stat(path), os.fstat(fd))
    except FileNotFoundError:
        return False


@contextlib.contextmanager
def _filelock(path: Path, on_wait: Callable[[], None] | None) -> Iterator[None]:  # pragma: no cover - Windows
    from filelock import FileLock, Timeout

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if on_wait is not None:
            on_wait()
        lock.acquire()
    try:
        yield
    finally:
        lock.release()
