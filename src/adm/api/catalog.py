"""What is installed: presets (released and training) and samplers, built-in or from plugins."""

from adm.presets import (
    Preset,
    Registry,
    TrainPreset,
    default_registry,
    get_preset,
    get_training_preset,
    list_presets,
)
from adm.sampling.registry import SamplerSpec, available_samplers, get_sampler
from adm.spec.flags import ModelFlags, SuperResFlags, image_size

__all__ = [
    "ModelFlags",
    "Preset",
    "Registry",
    "SamplerSpec",
    "SuperResFlags",
    "TrainPreset",
    "available_samplers",
    "default_registry",
    "get_preset",
    "get_sampler",
    "get_training_preset",
    "image_size",
    "list_presets",
]
