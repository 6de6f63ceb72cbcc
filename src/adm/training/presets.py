"""Training presets, looked up in the preset registry (``adm.presets``).

Training presets are registered like every other preset, through the entry-point group
``adm.presets`` (``registry.add_training_preset``); adm's own are in ``adm.presets.training``.
"""

from __future__ import annotations

from adm.presets.registry import Registry, default_registry
from adm.presets.types import TrainKind, TrainPreset


def training_presets(kind: TrainKind, registry: Registry | None = None) -> dict[str, TrainPreset]:
    return (registry or default_registry()).training_presets(kind)


def get_training_preset(name: str, kind: TrainKind, registry: Registry | None = None) -> TrainPreset:
    """The training preset ``name``; a released model without one gets its flags and default values."""
    return (registry or default_registry()).training_preset(name, kind)


__all__ = ["TrainPreset", "get_training_preset", "training_presets"]
