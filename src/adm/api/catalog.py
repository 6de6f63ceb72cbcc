"""What is installed: presets (released and training) and samplers, built-in or from plugins.

The presets are plain settings; the sampler registry holds the samplers themselves (torch), so
its names are imported on first use: listing presets or the cache never loads torch.
"""

import statistics
from dataclasses import dataclass

from adm.presets import (
    Preset,
    Registry,
    TrainPreset,
    default_registry,
    get_preset,
    get_training_preset,
    list_presets,
)
from adm.presets.costs import preset_cost
from adm.spec.costs import NetworkCost
from adm.spec.flags import ModelFlags, SuperResFlags, image_size

_SAMPLERS = ("SamplerSpec", "available_samplers", "get_sampler")  # adm.sampling.registry, on first use
_GUIDANCE = ("available_guidance", "guidance_option")  # adm.sampling.guidance.registry, on first use

__all__ = [
    "ModelFlags",
    "NetworkCost",
    "Preset",
    "Registry",
    "StepTiming",
    "SuperResFlags",
    "TrainPreset",
    "default_registry",
    "get_preset",
    "get_training_preset",
    "image_size",
    "list_presets",
    "measure_training_step",
    "preset_cost",
    *_SAMPLERS,
    *_GUIDANCE,
]


@dataclass(frozen=True)
class StepTiming:
    """Seconds of training steps of one preset's network, timed on this machine."""

    preset: TrainPreset
    batch_size: int
    threads: int
    seconds: tuple[float, ...]  # one per timed step, after the warm-up

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def measure_training_step(preset: TrainPreset, *, batch_size: int = 1, warmup: int = 1, repeats: int = 2,
                          threads: int | None = None, registry: Registry | None = None) -> StepTiming:
    """Time training steps (forward, backward, AdamW) of a training preset's network on the CPU,
    at ``batch_size`` with ``threads`` (default: ``$ADM_THREADS``, else torch's)."""
    from adm.core.threads import set_threads
    from adm.spec.costs import time_training_step

    flags = (registry or default_registry()).network_flags(preset)
    used = set_threads(threads)
    seconds = time_training_step(flags, batch_size, warmup=warmup, repeats=repeats)
    return StepTiming(preset, batch_size, used, tuple(seconds))


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
