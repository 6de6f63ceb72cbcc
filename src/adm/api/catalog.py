"""What is installed: presets (released and training) and samplers, built-in or from plugins.

The presets are plain settings; the sampler registry holds the samplers themselves (torch), so
its names are imported on first use: listing presets or the cache never loads torch.
"""

from adm.presets import (
    Preset,
    Registry,
    TrainPreset,
    default_registry,
    get_preset,
    get_training_preset,
    list_presets,
)
from adm.spec.flags import ModelFlags, SuperResFlags, image_size

_SAMPLERS = ("SamplerSpec", "available_samplers", "get_sampler")  # adm.sampling.registry, on first use
_GUIDANCE = ("available_guidance", "guidance_option")  # adm.sampling.guidance.registry, on first use

__all__ = [
    "ModelFlags",
    "Preset",
    "Registry",
    "SuperResFlags",
    "TrainPreset",
    "default_registry",
    "get_preset",
    "get_training_preset",
    "image_size",
    "list_presets",
    *_SAMPLERS,
    *_GUIDANCE,
]


def __getattr__(name: str):
    if name in _SAMPLERS:
        from adm.sampling import registry

        value = getattr(registry, name)
        globals()[name] = value
        return value
    if name in _GUIDANCE:
        from adm.sampling.guidance import registry

        value = getattr(registry, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
