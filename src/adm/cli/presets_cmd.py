"""`adm presets`: list the registry (released models by family, then training presets), or show one name.

A name can be a released preset (what `adm sample --preset` takes), a training preset (what
`adm train --preset` / `adm train-classifier --preset` take), or both: the released models have
training presets of the same name. `adm presets NAME --json` prints everything the name means;
`adm presets --json` prints that for every name.
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from adm.api.catalog import (
    Preset,
    Registry,
    SuperResFlags,
    TrainPreset,
    default_registry,
    image_size,
)
from adm.api.training import find_task, option_name
from adm.cli.common import console, guarded, warn


def _command(kind: str) -> str:
    """The command that trains a kind's runs (its training task says; adm.training.tasks)."""
    task = find_task(kind)
    return task.command if task is not None and task.command else "adm train"


@guarded
def presets(
    name: str | None = typer.Argument(None, help="Show one preset, released or training (default: list all)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON (original flag names)."),
) -> None:
    """List the presets (released models and training presets), or show one.

    Released models are what `adm sample --preset` takes; training presets what `adm train
    --preset` and `adm train-classifier --preset` take. Many names are both.
    """
    registry = default_registry()
    for problem in registry.plugin_errors:
        warn(problem)
    if name is not None:
        released, training = registry.lookup(name)
        if as_json:
            typer.echo(json.dumps(_entry(name, released, training, registry), indent=2))
            return
        if released is not None:
            table = Table(title=f"preset {released.name}", show_header=False)
            for key, value in released.to_json_dict().items():
                table.add_row(key, _cell(value))
            console.print(table)
        for preset in training.values():
            console.print(_training_table(preset, registry))
        return
    if as_json:
        names = [*registry.presets, *(p.name for p in registry.all_training_presets)]
        entries = {n: _entry(n, *registry.lookup(n), registry) for n in dict.fromkeys(names)}
        typer.echo(json.dumps(entries, indent=2))
        return
    console.print(_released_list(registry))
    console.print(_training_list(registry))


def _entry(name: str, released: Preset | None, training: dict[str, TrainPreset], registry: Registry) -> dict[str, Any]:
    """One name as JSON: the released preset's record plus ``training``, keyed by kind."""
    head = released.to_json_dict() if released is not None else {"name": name, "kind": "training"}
    return {**head, "training": {kind: _training_json(p, registry) for kind, p in training.items()}}


def _training_json(preset: TrainPreset, registry: Registry) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": preset.name,
        "kind": preset.kind,
        "command": f"{_command(preset.kind)} --preset {preset.name}",
        "description": preset.description,
        "released": preset.released,
        "network_flags": registry.network_flags(preset).flag_dict(),
    }
    if preset.kind == "classifier":
        doc["diffusion_flags"] = preset.noise_flags().flag_dict()
    doc.update(
        train=dict(preset.train), source=preset.source, unverified=list(preset.unverified), unknown=list(preset.unknown)
    )
    return doc


# The two lists are overviews that fit 80 columns: short facts whole (no_wrap), one prose column
# that wraps; the rest of a preset (its files, its training values) is `adm presets NAME`.


def _released_list(registry: Registry) -> Table:
    """One section per family (guided-diffusion, improved-diffusion, consistency-models,
    third-party, demo, then plugins' own), headed by the family's name."""
    table = Table(title="adm presets: released models (adm sample --preset NAME)",
                  caption="size a→b: an upsampler; `adm presets NAME` shows one preset in full, its downloads too")
    for column in ("name", "size", "classes", "guidance", "sampler"):
        table.add_column(column, no_wrap=True)
    for family, members in Preset.by_family(registry.presets.values()).items():
        table.add_section()
        table.add_row(f"[bold]{family}[/bold]", "", "", "", "")
        for preset in members:
            flags = preset.model_flags
            table.add_row(
                preset.name,
                _size(flags),
                str(flags.num_classes) if flags.class_cond else "-",
                f"scale {preset.classifier_scale:g}" if preset.classifier_flags else "-",
                f"{preset.sampling.sampler} {preset.sampling.steps}",
            )
    return table


def _training_list(registry: Registry) -> Table:
    table = Table(
        title="training presets: adm train / adm train-classifier --preset NAME",
        caption="`adm presets NAME` shows the options a preset sets; the rest are the command's defaults",
    )
    for column in ("name", "kind", "network", "description"):
        table.add_column(column, no_wrap=column != "description")
    for preset in registry.all_training_presets:
        table.add_row(preset.name, preset.kind, _network(preset, registry), preset.description)
    return table


def _training_table(preset: TrainPreset, registry: Registry) -> Table:
    table = Table(title=f"training preset {preset.name} ({_command(preset.kind)} --preset {preset.name})", show_header=False)
    table.add_row("description", preset.description)
    table.add_row("network", _network(preset, registry))
    table.add_row("network_flags", _cell(registry.network_flags(preset).flag_dict()))
    if preset.kind == "classifier":
        table.add_row("diffusion_flags", _cell(preset.noise_flags().flag_dict()))
    table.add_row("values", _values(preset) or "-")
    for key in ("source", "unverified", "unknown"):
        value = getattr(preset, key)
        if value:
            table.add_row(key, _cell(list(value) if isinstance(value, tuple) else value))
    return table


def _network(preset: TrainPreset, registry: Registry) -> str:
    """``released (64)``: the network of the released model of the same name (named when another)."""
    size = _size(registry.network_flags(preset))
    if not preset.released:
        return f"own flags ({size})"
    return f"released ({size})" if preset.released == preset.name else f"released {preset.released} ({size})"


def _size(flags) -> str:
    return f"{flags.small_size}→{flags.large_size}" if isinstance(flags, SuperResFlags) else str(image_size(flags))


def _values(preset: TrainPreset) -> str:
    """The preset's training values as the command-line options that would set them."""
    parts = []
    for field, value in preset.train.items():
        option = option_name(field)
        if isinstance(value, bool):
            parts.append(option if value else f"--no-{option[2:]}")
        elif isinstance(value, (tuple, list)):
            parts.append(f"{option} {','.join(str(v) for v in value) or 'none'}")
        else:
            parts.append(f"{option} {value}")
    return " ".join(parts)


def _cell(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)
