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


@app.command("digits", cls=AdmCommand)
@guarded
def digits(
    out: Path = typer.Argument(..., help="Working folder: data, runs, exported assets, recipe.json."),
    quick: bool = typer.Option(False, "--quick", help="A few steps of every stage (a smoke test, not a usable model)."),
) -> None:
    """Train the digits demo (diffusion model, noisy classifier, judge) and measure guidance."""
    from adm.recipes.digits import run_recipe

    with RichProgress() as progress:
        report = run_recipe(out, quick=quick, on_progress=progress)
    table = Table(title="guidance scale → judge accuracy / digits-FD")
    for column in ("scale", "accuracy", "digits-FD"):
        table.add_column(column, justify="right")
    for row in report.scales:
        table.add_row(f"{row['scale']:g}", f"{row['accuracy']:.3f}", f"{row['digits_fd']:.2f}")
    console.print(table)
    console.print(json.dumps({"seconds": report.seconds, "numbers": report.numbers}, indent=2))
    console.print(f"assets in {out / 'assets'}; copy them to src/adm/assets/ to ship them")


@app.command("digits-cfg", cls=AdmCommand)
@guarded
def digits_cfg(
    out: Path = typer.Argument(..., help="Working folder: data, runs, exported assets, recipe.json."),
    quick: bool = typer.Option(False, "--quick", help="A few steps of every stage (a smoke test, not a usable model)."),
) -> None:
    """Train the digits-cfg model (label dropout) and its autoguidance guide digits-guide, and measure both guidances."""
    from adm.recipes.digits import run_guidance_recipe

    with RichProgress() as progress:
        report = run_guidance_recipe(out, quick=quick, on_progress=progress)
    table = Table(title="digits-cfg: guidance → judge accuracy / digits-FD (held-out)")
    for column in ("cfg scale", "autoguidance", "accuracy", "digits-FD"):
        table.add_column(column, justify="right")
    for row in report.scales:
        table.add_row(f"{row['cfg_scale']:g}", f"{row['autoguidance']:g}", f"{row['accuracy']:.3f}", f"{row['digits_fd']:.2f}")
    console.print(table)
    console.print(json.dumps({"seconds": report.seconds, "numbers": report.numbers}, indent=2))
    console.print(f"assets in {out / 'assets'}; copy them to src/adm/assets/ to ship them")


@app.command("digits-cm", cls=AdmCommand)
@guarded
def digits_cm(
    out: Path = typer.Argument(..., help="Working folder: data, the distillation run, exported assets, recipe.json."),
    quick: bool = typer.Option(False, "--quick", help="A few steps of every stage (a smoke test, not a usable model)."),
) -> None:
    """Distil the guided digits sampler into digits-cm (adm distill --teacher digits) and measure it against the teacher."""
    from adm.recipes.digits_cm import run_distill_recipe

    with RichProgress() as progress:
        report = run_distill_recipe(out, quick=quick, on_progress=progress)
    table = Table(title="digits-cm against its teacher: judge accuracy / digits-FD (held-out) / seconds per image")
    for column in ("preset", "sampler", "steps", "accuracy", "digits-FD", "s / image"):
        table.add_column(column, justify="right")
    for row in report.scales:
        table.add_row(row["preset"], row["sampler"], row["steps"], f"{row['accuracy']:.3f}", f"{row['digits_fd']:.2f}",
                      f"{row['seconds_per_image']:.4f}")
    console.print(table)
    console.print(json.dumps({"seconds": report.seconds, "numbers": report.numbers}, indent=2))
    console.print(f"assets in {out / 'assets'}; copy them to src/adm/assets/ to ship them")
