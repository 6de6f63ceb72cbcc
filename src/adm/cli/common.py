"""What every command shares: consoles, turning library errors into one line and an exit code,
and the command classes that render help correctly.

Exit codes are ``adm.core.errors.EXIT_CODES`` (docs/cli.md): an ``AdmError`` exits with its own
code, an ``OSError`` (the operating system refused a read or write) with 1, a stop signal N
(Ctrl-C's SIGINT, SIGTERM) with 128 + N.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import sys
from collections.abc import Callable
from typing import TypeVar

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

try:  # recent typer vendors click; older releases depend on it
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - depends on the installed typer
    from click.exceptions import ClickException

from adm.core.errors import EXIT_ENVIRONMENT, EXIT_INTERRUPTED, AdmError
from adm.core.signals import Interrupted, raising, signal_of

console = Console()
err_console = Console(stderr=True)

C = TypeVar("C", bound=Callable)

_OS_HINTS = {
    errno.ENOSPC: "free some space, or write to another disk",
    errno.EDQUOT: "free some space (the disk quota is used up), or write elsewhere",
    errno.EACCES: "choose a location you can write to, or fix its permissions",
    errno.EPERM: "choose a location you can write to, or fix its permissions",
    errno.EROFS: "choose a location on a writable file system",
}


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print a one-line error; return the Exit to raise."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True, markup=True)
    return typer.Exit(code)


def warn(message: str) -> None:
    """Print a warning on stderr as one line, however narrow the terminal: logs are read (and
    grepped) by line, so the terminal wraps it, rich does not."""
    err_console.print(f"[yellow]warning:[/] {_plain(message)}", highlight=False, soft_wrap=True)


def os_error_line(err: OSError) -> str:
    """An ``OSError`` in one line: the file, the system's words, and what to do about it."""
    where = f"{err.filename}: " if err.filename else ""
    text = f"{where}{err.strerror or err}"
    hint = _OS_HINTS.get(err.errno)
    return f"{text} ({hint})" if hint else text


def guarded(func: C) -> C:
    """Run a command so that a user-fixable problem is one line on stderr, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            with raising():  # SIGTERM (schedulers, timeout, docker stop) stops a command as Ctrl-C does
                return func(*args, **kwargs)
        except AdmError as err:
            raise fail(_plain(str(err)), err.exit_code) from None
        except KeyboardInterrupt as err:  # the library's Interrupted says what was kept
            raise fail(_plain(str(err) if isinstance(err, Interrupted) else "interrupted"),
                       128 + signal_of(err)) from None
        except OSError as err:  # an unwritable or vanished path, a full disk: the OS's words, one line
            raise fail(_plain(os_error_line(err)), EXIT_ENVIRONMENT) from None

    return wrapper  # type: ignore[return-value]


def _plain(text: str) -> str:
    """Keep rich from reading ``[...]`` in a message (a list of shapes, a path) as markup."""
    from rich.markup import escape

    return escape(" ".join(text.split()))


# --------------------------------------------------------------------------------------------
# Help rendering
#
# typer 0.29's rich help prints the value type of every option in the help panel, flags
# included: `--quiet <bool>`, `--help <bool>`, as if they took a value. (Its plain-text help and
# click skip flags; the rich panel's `display_type_rich` does not check `is_flag`.) An option's
# own metavar takes precedence there, so a flag with an empty metavar shows no placeholder. The
# command classes below give every flag of a command that empty metavar, typer's own --help
# included, so no option declaration has to remember it.
#
# The same panel gives the `--no-x` of a `--x/--no-x` switch a column of its own, as wide as the
# longest such name: at 80 columns `adm edit --help` (`--no-clip-denoised`) had about 20
# characters left for the descriptions. While help is drawn, a switch's two names share the
# option's own column, one under the other, so that column costs no width. And typer keeps the
# line breaks of a docstring's later paragraphs, which rich then wraps again at the terminal's
# width (a long line and a stub, by turns, at 80 columns): each paragraph becomes one line.


def _one_line_paragraphs(text: str) -> str:
    paragraphs = inspect.cleandoc(text).split("\n\n")
    return "\n\n".join(" ".join(line.strip() for line in paragraph.splitlines()) for paragraph in paragraphs)


def _blank_flag_metavar(param) -> None:
    if getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""


@contextlib.contextmanager
def _switch_names_stacked(params):
    """While help is drawn: ``--x`` and ``--no-x`` as one name on two lines (parsing never sees it)."""
    switches = [(param, param.opts, param.secondary_opts) for param in params if getattr(param, "secondary_opts", None)]
    try:
        for param, opts, secondary in switches:
            long = [o for o in opts if o.startswith("--")]
            param.opts = ["\n".join(long + secondary)] + [o for o in opts if o not in long]
            param.secondary_opts = []
        yield
    finally:
        for param, opts, secondary in switches:
            param.opts, param.secondary_opts = opts, secondary


class _FlagsWithoutPlaceholder:
    """Mixin for typer's command classes: every flag, --help included, gets an empty metavar, a
    switch's ``--no-x`` takes no column of its own, and a paragraph of help is one line."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for param in self.params:
            _blank_flag_metavar(param)
        if self.help:
            self.help = _one_line_paragraphs(self.help)

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            _blank_flag_metavar(option)
        return option

    def format_help(self, ctx, formatter):
        with _switch_names_stacked(self.get_params(ctx)):
            return super().format_help(ctx, formatter)


class AdmCommand(_FlagsWithoutPlaceholder, TyperCommand):
    """A typer command whose flags show no value placeholder in the rich help."""


class AdmGroup(_FlagsWithoutPlaceholder, TyperGroup):
    """The same for a command group (``adm``, ``adm data``, ``adm recipe``), whose parse errors
    (an unknown option, a missing or malformed value) are one line too, not typer's panel."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as err:
            if type(err).__name__ == "NoArgsIsHelpError" or not err.format_message().strip():
                sys.exit(0)  # `adm` alone: the help was the answer
            where = f" (see `{err.ctx.command_path} --help`)" if getattr(err, "ctx", None) else ""
            fail(_plain(err.format_message()) + where, err.exit_code)
            sys.exit(err.exit_code)
        except typer.Abort:
            fail("interrupted", EXIT_INTERRUPTED)
            sys.exit(EXIT_INTERRUPTED)
        sys.exit(code if isinstance(code, int) else 0)
