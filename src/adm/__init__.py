"""adm: sample, train and evaluate ADM (classifier-guided diffusion) models.

Three lines from a preset to images::

    import adm
    samples = adm.sample("imagenet64", num_samples=16, classes="balanced", download=True)
    samples.images, samples.labels        # uint8 [16, 64, 64, 3], int64 [16]

``adm.load_model`` gives the networks and the diffusion process themselves.
"""

from adm._version import __version__
from adm.api import LoadedModel, default_device, load_model
from adm.errors import AdmError, CheckpointError, MissingFileError, UsageError
from adm.pipeline import ModelSource, Samples, sample, upsample
from adm.presets import get_preset, list_presets

__all__ = [
    "AdmError",
    "CheckpointError",
    "LoadedModel",
    "ModelSource",
    "Samples",
    "MissingFileError",
    "UsageError",
    "__version__",
    "default_device",
    "get_preset",
    "list_presets",
    "load_model",
    "sample",
    "upsample",
]
