"""The `adm` command: one Typer app, one module per command, each a thin call into the library."""

from __future__ import annotations

import typer

from adm._version import __version__
from adm.cli.common import fail
from adm.cli.convert_cmd import convert
from adm.cli.download_cmd import download
from adm.cli.presets_cmd import presets
from adm.cli.sample_cmd import sample, upsample

app = typer.Typer(
    name="adm",
    help="Sample, train and evaluate ADM (guided-diffusion) models.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"adm {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version."),
) -> None:
    """Sample, train and evaluate ADM (guided-diffusion) models."""


app.command("presets")(presets)
app.command("download")(download)
app.command("convert")(convert)
app.command("sample")(sample)
app.command("upsample")(upsample)


def _not_built(name: str, issue: str):
    def command(ctx: typer.Context) -> None:
        raise fail(f"`adm {name}` is not available in this version yet ({issue})")

    command.__doc__ = f"(not available yet: {issue})"
    return command


# Commands of later milestones: registered so `adm --help` shows the whole tool, and each says
# in one line that it is not available yet (exit 2). Remove an entry when its module lands.
NOT_YET = {
    "train": "planned: training",
    "train-classifier": "planned: classifier training",
    "evaluate": "planned: evaluation",
}
for _name, _note in NOT_YET.items():
    app.command(_name, context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(
        _not_built(_name, _note)
    )


def run() -> None:
    """Console-script entry point."""
    app()
