"""Errors the library raises for problems a user can fix.

Every ``AdmError`` carries a one-line message naming the problem and, where there is one, the fix.
The CLI prints ``str(err)`` and exits with ``err.exit_code``; the library itself never prints or exits.
"""

from __future__ import annotations


class AdmError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UsageError(AdmError, ValueError):
    """Bad flags, options or values: the command line is wrong (exit code 2)."""

    exit_code = 2


class CheckpointError(AdmError):
    """A checkpoint file is unsafe, unreadable, or does not fit the chosen architecture."""

    exit_code = 2


class MissingFileError(AdmError, FileNotFoundError):
    """A file adm needs is not there; the hint names the command that fetches it."""

    exit_code = 2


class DownloadError(AdmError):
    """A download failed: the server said no, could not be reached, or the disk filled up."""

    exit_code = 3


class ChecksumError(DownloadError):
    """A file does not have the size or sha256 it must have; it was removed from the cache."""

    exit_code = 4
