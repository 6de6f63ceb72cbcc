"""What every command shares: consoles, turning library errors into one line and an exit code."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console

from adm.errors import AdmError

console = Console()
err_console = Console(stderr=True)

C = TypeVar("C", bound=Callable)


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error; return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def guarded(func: C) -> C:
    """Run a command so that a user-fixable problem is one line on stderr, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except AdmError as err:
            raise fail(str(err), err.exit_code) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except OSError as err:  # an unwritable or vanished path, a full disk: the OS's words, one line
            where = f"{err.filename}: " if err.filename else ""
            raise fail(f"{where}{err.strerror or err}", 1) from None

    return wrapper  # type: ignore[return-value]
