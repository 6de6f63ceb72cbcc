"""Errors the library raises for problems a user can fix, and the exit codes the CLI maps them to.

Every ``AdmError`` carries a one-line message naming the problem and, where there is one, the fix.
The CLI prints ``str(err)`` and exits with ``err.exit_code``; the library itself never prints or exits.

The exit codes are a contract for scripts (docs/cli.md prints this table): a script can retry a
download failure (3), re-fetch after a verification failure (4), and must not retry a usage error
(2) or an environment failure (1) without changing something first.
"""

from __future__ import annotations

from types import MappingProxyType

EXIT_OK = 0
EXIT_ENVIRONMENT = 1
EXIT_USAGE = 2
EXIT_DOWNLOAD = 3
EXIT_VERIFICATION = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

EXIT_CODES = MappingProxyType(
    {
        EXIT_OK: "success",
        EXIT_ENVIRONMENT: "environment / OS failure: the operating system refused a read or write "
        "(disk full, permission denied, read-only file system, a path that vanished)",
        EXIT_USAGE: "usage error: bad options, flags or values, an input file that is missing, "
        "unreadable or does not fit (nothing was written)",
        EXIT_DOWNLOAD: "download failure: the server refused or could not be reached (a retry may help)",
        EXIT_VERIFICATION: "verification failure: a file's size, sha256 or contents are not what they "
        "must be (it was removed, or never entered the cache)",
        EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGINT)",
    }
)
"""Every exit code adm's commands use (a command stopped by a signal N exits ``128 + N``:
130 for SIGINT, 143 for SIGTERM; ``adm.core.signals``)."""


class AdmError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = EXIT_ENVIRONMENT

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(AdmError, ValueError):
    """Bad flags, options or values: the command line is wrong (exit code 2)."""

    exit_code = EXIT_USAGE


class CheckpointError(AdmError):
    """A checkpoint file is unsafe, unreadable, or does not fit the chosen architecture."""

    exit_code = EXIT_USAGE


class MissingFileError(AdmError, FileNotFoundError):
    """A file adm needs is not there; the hint names the command that fetches it."""

    exit_code = EXIT_USAGE


class StorageError(AdmError):
    """The operating system refused a write adm needs (disk full, permission denied): exit code 1.

    Nothing about the input is wrong, so it is not a usage error; fixing the machine (space,
    permissions) and re-running the same command is the remedy.
    """

    exit_code = EXIT_ENVIRONMENT


class DivergedError(AdmError):
    """A training run stopped because its loss or gradients stayed non-finite (exit code 2).

    A usage error in kind: the remedy is other options (a lower ``--lr``, ``--grad-clip``, another
    ``--precision``) or other data, then the same run dir continues from its last good checkpoint,
    which the message names and the run kept.
    """

    exit_code = EXIT_USAGE


class DownloadError(AdmError):
    """A download failed: the server said no or could not be reached (exit code 3)."""

    exit_code = EXIT_DOWNLOAD


class DownloadStorageError(StorageError, DownloadError):
    """A download stopped because the cache could not be written (full disk, unwritable folder).

    It is a ``DownloadError`` for callers that catch those, but exits 1 like every other
    environment failure: retrying cannot help until space or permissions are fixed.
    """

    exit_code = EXIT_ENVIRONMENT


class ChecksumError(DownloadError):
    """A file does not have the size, sha256 or contents it must have; it was removed from (or
    never entered) the cache (exit code 4)."""

    exit_code = EXIT_VERIFICATION


def one_line(err: BaseException | str, limit: int = 160) -> str:
    """Another library's error text squeezed into one line of at most ``limit`` characters, for
    quoting inside an adm message (their messages span lines and can run to pages)."""
    text = " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
