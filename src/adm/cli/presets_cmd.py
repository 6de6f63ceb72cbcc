"""`adm presets`: list the registry, or print one preset as JSON."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from adm.cli.common import console, err_console, guarded
from adm.presets import default_registry


@guarded
def presets(
    name: str | None = typer.Argument(None, help="Show one preset (default: list all)."),
    as_json: bool = typer.Option(False, "--json", help="Print the preset as JSON (original flag names)."),
) -> None:
    """List the named presets (one per released model), or show one."""
    registry = default_registry()
    for problem in registry.plugin_errors:
        err_console.print(f"[yellow]warning:[/] {problem}")
    if name is not None:
        preset = registry.preset(name)
        if as_json:
            typer.echo(json.dumps(preset.to_json_dict(), indent=2))
            return
        table = Table(title=f"preset {preset.name}", show_header=False)
        for key, value in preset.to_json_dict().items():
            table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
        console.print(table)
        return
    if as_json:
        typer.echo(json.dumps({n: p.to_json_dict() for n, p in registry.presets.items()}, indent=2))
        return
    table = Table(title="adm presets", caption="`adm presets NAME` shows one preset in full")
    for column in ("name", "kind", "size", "guidance", "steps", "download"):
        table.add_column(column, no_wrap=column in ("name", "download"))
    for preset in registry.presets.values():
        flags = preset.model_flags
        size = f"{flags.small_size}→{flags.large_size}" if preset.is_upsampler else str(flags.image_size)
        table.add_row(
            preset.name,
            ("upsampler" if preset.is_upsampler else "diffusion") + (" (cond)" if flags.class_cond else ""),
            size,
            f"scale {preset.classifier_scale:g}" if preset.classifier_flags else "-",
            f"{preset.sampling.sampler} {preset.sampling.steps}",
            " ".join(preset.artifacts),
        )
    console.print(table)
