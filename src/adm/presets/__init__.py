"""Named presets: the flag sets of OpenAI's released checkpoints, extensible through entry points."""

from adm.presets.registry import ENTRY_POINT_GROUP, Registry, default_registry
from adm.presets.types import Artifact, Preset, SamplingDefaults, TrainKind, TrainPreset


def get_preset(name: str) -> Preset:
    """A registered preset by name (a one-line UsageError suggests close names otherwise)."""
    return default_registry().preset(name)


def list_presets() -> list[Preset]:
    return list(default_registry().presets.values())


def get_training_preset(name: str, kind: TrainKind = "diffusion") -> TrainPreset:
    """A training preset; a released model without one gets its flags and default values."""
    return default_registry().training_preset(name, kind)


__all__ = [
    "ENTRY_POINT_GROUP",
    "Artifact",
    "Preset",
    "Registry",
    "SamplingDefaults",
    "TrainPreset",
    "default_registry",
    "get_preset",
    "get_training_preset",
    "list_presets",
]
