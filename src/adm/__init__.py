"""adm: sample, train and evaluate ADM (classifier-guided diffusion) models.

Three lines from a preset to images::

    import adm
    samples = adm.sample("imagenet64", num_samples=16, classes="balanced", download=True)
    samples.images, samples.labels        # uint8 [16, 64, 64, 3], int64 [16]

``adm.load_model`` gives the networks and the diffusion process themselves. The names below are
imported on first use, so ``import adm`` (and the ``adm`` command) can set up the process before
torch loads.
"""

from __future__ import annotations

import importlib

from adm._version import __version__

_EXPORTS = {
    "AdmError": "adm.core.errors",
    "CheckpointError": "adm.core.errors",
    "MissingFileError": "adm.core.errors",
    "UsageError": "adm.core.errors",
    "LoadedModel": "adm.api.models",
    "default_device": "adm.api.models",
    "load_model": "adm.api.models",
    "ModelSource": "adm.api.sources",
    "RunOptions": "adm.api.options",
    "SamplingOptions": "adm.api.options",
    "Samples": "adm.api.generation",
    "sample": "adm.api.generation",
    "upsample": "adm.api.generation",
    "edit": "adm.api.editing",
    "train": "adm.api.training",
    "train_classifier": "adm.api.training",
    "distill": "adm.api.distill",
    "get_preset": "adm.api.catalog",
    "list_presets": "adm.api.catalog",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adm' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
