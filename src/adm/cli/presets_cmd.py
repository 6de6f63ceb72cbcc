"""`adm presets`: list the registry (released models by family, then training presets), or show one name.

A name can be a released preset (what `adm sample --preset` takes), a training preset (what
`adm train --preset` / `adm train-classifier --preset` take), or both: the released models have
training presets of the same name. `adm presets NAME --json` prints everything the name means;
`adm presets --json` prints that for every name.

What a training preset costs: its parameters and the GFLOPs of one forward pass of one image,
recorded with adm (counted from the flags, the same on every machine), and with `--measure` the
seconds of a training step timed here, on the user's machine: seconds belong to a machine and
its load, so adm ships none (docs/presets.md has a table measured on one machine, dated).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from adm.api.catalog import (
    NetworkCost,
    Preset,
    Registry,
    StepTiming,
    SuperResFlags,
    TrainPreset,
    default_registry,
    image_size,
    measure_training_step,
    preset_cost,
)
from adm.api.training import find_task, option_name
from adm.cli.common import console, err_console, guarded, warn
from adm.core.errors import UsageError


def _command(kind: str) -> str:
    """The command that trains a kind's runs (its training task says; adm.training.tasks)."""
    task = find_task(kind)
    return task.command if task is not None and task.command else "adm train"


@guarded
def presets(
    name: str | None = typer.Argument(None, help="Show one preset, released or training (default: list all)."),
    as_json: bool = typer.Option(False, "--json", help="Print as JSON (original flag names)."),
    measure: bool = typer.Option(False, "--measure", help="Time training steps (forward, backward, AdamW) of NAME's network on this machine's CPU: one warm-up step and two timed ones (minutes for the 256x256 networks)."),
    batch_size: int = typer.Option(1, "--batch-size", min=1, help="Images per step with --measure."),
) -> None:
    """List the presets (released models and training presets), or show one.

    Released models are what `adm sample --preset` takes; training presets what `adm train
    --preset` and `adm train-classifier --preset` take. Many names are both. Training presets
    show their network's parameters and GFLOPs per image; --measure times a step here.
    """
    registry = default_registry()
    for problem in registry.plugin_errors:
        warn(problem)
    if name is None and measure:
        raise UsageError("--measure times one preset's training step", "give its name: adm presets NAME --measure")
    if name is not None:
        released, training = registry.lookup(name)
        timings = _measure(name, released, training, registry, batch_size) if measure else {}
        if as_json:
            typer.echo(json.dumps(_entry(name, released, training, registry, timings, count=True), indent=2))
            return
        if released is not None:
            table = Table(title=f"preset {released.name}", show_header=False)
            for key, value in released.to_json_dict().items():
                table.add_row(key, _cell(value))
            console.print(table)
        for kind, preset in (training or _timings_only(timings)).items():
            console.print(_training_table(preset, registry, timings.get(kind)))
        return
    if as_json:
        names = [*registry.presets, *(p.name for p in registry.all_training_presets)]
        entries = {n: _entry(n, *registry.lookup(n), registry) for n in dict.fromkeys(names)}
        typer.echo(json.dumps(entries, indent=2))
        return
    console.print(_released_list(registry))
    console.print(_training_list(registry))


def _measure(name: str, released: Preset | None, training: dict[str, TrainPreset], registry: Registry,
             batch_size: int) -> dict[str, StepTiming]:
    """Time each training preset of ``name`` (a released model without one: its network, as
    `adm train --preset NAME` would train it)."""
    presets = training or {"diffusion": registry.training_preset(name, "diffusion")}
    timings = {}
    for kind, preset in presets.items():
        cost = preset_cost(preset, registry, count=True)
        err_console.print(f"timing a training step of {preset.name} ({kind}, {_gflops(cost)} GFLOPs per image "
                          f"forward) at batch {batch_size}...", highlight=False, soft_wrap=True)
        timings[kind] = measure_training_step(preset, batch_size=batch_size, registry=registry)
    return timings


def _timings_only(timings: dict[str, StepTiming]) -> dict[str, TrainPreset]:
    """The presets timed for a released model that has no training preset of its own."""
    return {kind: timing.preset for kind, timing in timings.items()}


def _entry(name: str, released: Preset | None, training: dict[str, TrainPreset], registry: Registry,
           timings: dict[str, StepTiming] | None = None, *, count: bool = False) -> dict[str, Any]:
    """One name as JSON: the released preset's record plus ``training``, keyed by kind (with
    ``count``, a preset whose cost adm does not record is counted: that loads torch)."""
    timings = timings or {}
    head = released.to_json_dict() if released is not None else {"name": name, "kind": "training"}
    presets = training or _timings_only(timings)
    return {**head, "training": {kind: _training_json(p, registry, timings.get(kind), count=count)
                                 for kind, p in presets.items()}}


def _training_json(preset: TrainPreset, registry: Registry, timing: StepTiming | None = None, *,
                   count: bool = False) -> dict[str, Any]:
    cost = preset_cost(preset, registry, count=count)
    doc: dict[str, Any] = {
        "name": preset.name,
        "kind": preset.kind,
        "command": f"{_command(preset.kind)} --preset {preset.name}",
        "description": preset.description,
        "released": preset.released,
        "changes": preset.changes,
        "network_flags": registry.network_flags(preset).flag_dict(),
    }
    if preset.kind == "classifier":
        doc["diffusion_flags"] = preset.noise_flags().flag_dict()
    doc.update(
        train=dict(preset.train), source=preset.source, unverified=list(preset.unverified), unknown=list(preset.unknown),
        params=cost.params if cost else None, flops_per_image=cost.flops if cost else None,
    )
    if timing is not None:
        doc["measured"] = {"batch_size": timing.batch_size, "threads": timing.threads,
                           "seconds_per_step": list(timing.seconds)}
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
    """One section per training task (diffusion, classifier, then plugins' kinds), headed by it."""
    table = Table(
        title="training presets: adm train / adm train-classifier --preset NAME",
        caption="params and GFLOPs: the network's, GFLOPs of one forward pass of one image (a training step "
                "is about 3x that per image); `adm presets NAME` shows the options a preset sets, the rest are "
                "the command's defaults; `adm presets NAME --measure` times a step on this machine",
    )
    for column in ("name", "size", "params", "GFLOPs", "description"):
        table.add_column(column, no_wrap=column != "description", justify="right" if column in ("params", "GFLOPs") else "left")
    by_kind: dict[str, list[TrainPreset]] = {}
    for preset in registry.all_training_presets:
        by_kind.setdefault(preset.kind, []).append(preset)
    for kind, members in by_kind.items():
        table.add_section()
        table.add_row(f"[bold]{kind}[/bold]", "", "", "", "")
        for preset in members:
            cost = preset_cost(preset, registry)
            table.add_row(preset.name, _size(registry.network_flags(preset)), _params(cost), _gflops(cost),
                          preset.description)
    return table


def _training_table(preset: TrainPreset, registry: Registry, timing: StepTiming | None = None) -> Table:
    table = Table(title=f"training preset {preset.name} ({_command(preset.kind)} --preset {preset.name})", show_header=False)
    table.add_row("description", preset.description)
    table.add_row("network", _network(preset, registry))
    if preset.changes:
        table.add_row("changes", preset.changes)
    table.add_row("network_flags", _cell(registry.network_flags(preset).flag_dict()))
    cost = preset_cost(preset, registry, count=True)
    table.add_row("params", f"{cost.params:,} ({_params(cost)})")
    table.add_row("GFLOPs", f"{_gflops(cost)} per image, one forward pass (a training step: about 3x per image)")
    if timing is not None:
        steps = ", ".join(f"{s:.2f}" for s in timing.seconds)
        table.add_row("measured", f"{timing.median:.2f} s per training step at batch {timing.batch_size} on this "
                                  f"machine ({timing.threads} threads; steps: {steps} s, after one warm-up step)")
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
    which = "released" if preset.released == preset.name else f"released {preset.released}"
    return f"{which} + changes ({size})" if preset.changes else f"{which} ({size})"


def _params(cost: NetworkCost | None) -> str:
    """``553.8M``; ``-`` for a preset adm records no cost for (a plugin's: `adm presets NAME` counts it)."""
    if cost is None:
        return "-"
    return f"{cost.params / 1e6:.1f}M" if cost.params >= 1e6 else f"{cost.params / 1e3:.0f}k"


def _gflops(cost: NetworkCost | None) -> str:
    """Three significant figures, at most: ``2240``, ``16.8``, ``0.153``."""
    if cost is None:
        return "-"
    gflops = cost.gflops
    return f"{gflops:.0f}" if gflops >= 100 else f"{gflops:.3g}"


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
