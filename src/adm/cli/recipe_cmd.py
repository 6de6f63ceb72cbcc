"""`adm recipe digits OUT`, `adm recipe digits-cfg OUT` and `adm recipe digits-cm OUT`: re-create the shipped
digits demos from scratch, on a CPU."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from adm.cli.common import AdmCommand, AdmGroup, console, guarded
from adm.cli.progress import RichProgress

app = typer.Typer(help="Recipes that rebuild adm's shipped models.", no_args_is_help=True, cls=AdmGroup)


OUT = typer.Argument(..., help="Working folder: data, runs, exported assets, recipe.json.")
QUICK = typer.Option(False, "--quick", help="A few steps of every stage (a smoke test, not a usable model).")


def _run_and_show(run, out: Path, quick: bool, title: str, columns: dict) -> None:
    """Run a recipe with a progress bar, then show its table (``columns``: header -> cell of a row),
    its timings and where its assets are."""
    with RichProgress() as progress:
        report = run(out, quick=quick, on_progress=progress)
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    for row in report.scales:
        table.add_row(*(cell(row) for cell in columns.values()))
    console.print(table)
    console.print(json.dumps({"seconds": report.seconds, "numbers": report.numbers}, indent=2))
    console.print(f"assets in {out / 'assets'}; copy them to src/adm/assets/ to ship them")


ACCURACY = {"accuracy": lambda r: f"{r['accuracy']:.3f}", "digits-FD": lambda r: f"{r['digits_fd']:.2f}"}


@app.command("digits", cls=AdmCommand)
@guarded
def digits(out: Path = OUT, quick: bool = QUICK) -> None:
    """Train the digits demo (diffusion model, noisy classifier, judge) and measure guidance."""
    from adm.recipes.digits import run_recipe

    _run_and_show(run_recipe, out, quick, "guidance scale → judge accuracy / digits-FD",
                  {"scale": lambda r: f"{r['scale']:g}", **ACCURACY})


@app.command("digits-cfg", cls=AdmCommand)
@guarded
def digits_cfg(out: Path = OUT, quick: bool = QUICK) -> None:
    """Train the digits-cfg model (label dropout) and its autoguidance guide digits-guide, and measure both guidances."""
    from adm.recipes.digits import run_guidance_recipe

    _run_and_show(run_guidance_recipe, out, quick, "digits-cfg: guidance → judge accuracy / digits-FD (held-out)",
                  {"cfg scale": lambda r: f"{r['cfg_scale']:g}", "autoguidance": lambda r: f"{r['autoguidance']:g}",
                   **ACCURACY})


@app.command("digits-cm", cls=AdmCommand)
@guarded
def digits_cm(out: Path = OUT, quick: bool = QUICK) -> None:
    """Distil the guided digits sampler into digits-cm (adm distill --teacher digits) and measure it against the teacher."""
    from adm.recipes.digits_cm import run_distill_recipe

    _run_and_show(run_distill_recipe, out, quick,
                  "digits-cm against its teacher: judge accuracy / digits-FD (held-out) / seconds per image",
                  {"preset": lambda r: r["preset"], "sampler": lambda r: r["sampler"], "steps": lambda r: r["steps"],
                   **ACCURACY, "s / image": lambda r: f"{r['seconds_per_image']:.4f}"})
