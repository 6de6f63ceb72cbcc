"""Named presets: the flag sets of OpenAI's released checkpoints, extensible through entry points."""

from adm.presets.registry import ENTRY_POINT_GROUP, Registry, default_registry
from adm.presets.types import Artifact, Preset, SamplingDefaults


def get_preset(name: str) -> Preset:
    """A registered preset by name (a one-line UsageError suggests close names otherwise)."""
    return default_registry().preset(name)


def list_presets() -> list[Preset]:
    return list(default_registry().presets.values())


__all__ = [
    "ENTRY_POINT_GROUP",
    "Artifact",
    "Preset",
    "Registry",
    "SamplingDefaults",
    "default_registry",
    "get_preset",
    "list_presets",
]
