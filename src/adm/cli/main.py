"""The `adm` command: one Typer app, one module per command, each a thin call into the library.

Typer reads every command's signature when the app starts, so importing a command module must be
cheap: at module level a command imports only what its options are made of (the API's settings
models, constants); the API's functions, and with them torch, are imported in the command's
body. `adm --help`, `adm presets` and `adm download --list` never load torch
(tests/test_startup.py).
"""

from __future__ import annotations

import typer

from adm._version import __version__
from adm.cli.common import AdmCommand, AdmGroup
from adm.cli.convert_cmd import convert
from adm.cli.data_cmd import app as data_app
from adm.cli.distill_cmd import distill
from adm.cli.download_cmd import download
from adm.cli.edit_cmd import edit
from adm.cli.evaluate_cmd import evaluate
from adm.cli.presets_cmd import presets
from adm.cli.recipe_cmd import app as recipe_app
from adm.cli.sample_cmd import sample, upsample
from adm.cli.samplers_cmd import samplers
from adm.cli.train_cmd import train, train_classifier

app = typer.Typer(
    name="adm",
    help="Sample, train and evaluate ADM (guided-diffusion) models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=AdmGroup,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"adm {__version__}")
        raise typer.Exit()


def _threads(value: int | None) -> int | None:
    if value is None:  # torch's own default: nothing to set, and no reason to load torch
        return value
    from adm.core.errors import UsageError
    from adm.core.threads import set_threads

    try:
        set_threads(value)
    except UsageError as err:
        raise typer.BadParameter(str(err)) from None
    return value


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
    threads: int | None = typer.Option(
        None, "--threads", callback=_threads, envvar="ADM_THREADS", show_default=False,
        help="CPU threads for torch (default: OMP_NUM_THREADS, else torch's; OpenMP threads sleep rather than spin while waiting, so a busy machine degrades gracefully).",
    ),
) -> None:
    """Sample, train and evaluate ADM (guided-diffusion) models."""


app.command("presets", cls=AdmCommand)(presets)
app.command("samplers", cls=AdmCommand)(samplers)
app.command("download", cls=AdmCommand)(download)
app.command("convert", cls=AdmCommand)(convert)
app.command("evaluate", cls=AdmCommand)(evaluate)
app.command("sample", cls=AdmCommand)(sample)
app.command("upsample", cls=AdmCommand)(upsample)
app.command("edit", cls=AdmCommand)(edit)
app.command("train", cls=AdmCommand)(train)
app.command("train-classifier", cls=AdmCommand)(train_classifier)
app.command("distill", cls=AdmCommand)(distill)
app.add_typer(data_app, name="data")
app.add_typer(recipe_app, name="recipe")


def run() -> None:
    """Console-script entry point."""
    app()
