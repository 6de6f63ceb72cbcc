"""What each built-in training preset's network costs, recorded in ``costs.json`` beside this file.

Parameters and FLOPs are facts of a preset's flags (``adm.spec.costs.count_cost`` counts them on
the meta device); they are recorded here so that ``adm presets`` can list them without loading
torch. ``benchmarks/preset_costs.py count`` rewrites the file, and a test recounts every preset
against it, so the record cannot drift from the flags. A preset without a record (a plugin's) is
counted when it is shown alone. Seconds per step are not recorded: they belong to a machine
(``adm presets NAME --measure`` times one on the user's; docs/presets.md has ours).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from functools import cache
from importlib.resources import files
from pathlib import Path

from adm.presets.registry import Registry
from adm.presets.types import TrainPreset
from adm.spec.costs import NetworkCost, count_cost

COSTS_FILE = "costs.json"
ABOUT = ("parameters and FLOPs of one forward pass of one image (a multiply-add counts 2) of each built-in "
         "training preset's network, counted on the meta device; rewritten by `python benchmarks/preset_costs.py count`")


def cost_key(preset: TrainPreset) -> str:
    """A training preset's key in the record: names are unique per kind, not across kinds."""
    return f"{preset.kind}/{preset.name}"


@cache
def recorded_costs() -> dict[str, NetworkCost]:
    """The record shipped with adm (no torch)."""
    document = json.loads(files("adm.presets").joinpath(COSTS_FILE).read_text(encoding="utf-8"))
    return {key: NetworkCost(**value) for key, value in document["costs"].items()}


def preset_cost(preset: TrainPreset, registry: Registry, *, count: bool = False) -> NetworkCost | None:
    """The recorded cost of a preset's network; a preset without a record is counted when
    ``count`` (that loads torch), else None."""
    recorded = recorded_costs().get(cost_key(preset))
    if recorded is not None or not count:
        return recorded
    return count_cost(registry.network_flags(preset))


def count_costs(presets: Iterable[TrainPreset], registry: Registry) -> dict[str, NetworkCost]:
    """Count each preset's network afresh (what the record should say)."""
    return {cost_key(p): count_cost(registry.network_flags(p)) for p in presets}


def costs_document(costs: dict[str, NetworkCost]) -> dict:
    """The record as written to ``costs.json``."""
    return {"about": ABOUT, "costs": {key: {"params": c.params, "flops": c.flops} for key, c in costs.items()}}


def costs_path() -> Path:
    """Where the record lives in a source checkout (what the benchmark rewrites)."""
    return Path(__file__).with_name(COSTS_FILE)
