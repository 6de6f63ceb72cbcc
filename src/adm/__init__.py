"""adm: sample, train and evaluate ADM (classifier-guided diffusion) models.

Three lines from a preset to a model::

    import adm
    m = adm.load_model("imagenet64", download=True)
    m.model, m.classifier, m.process
"""

from adm._version import __version__
from adm.api import LoadedModel, default_device, load_model
from adm.errors import AdmError, CheckpointError, MissingFileError, UsageError
from adm.presets import get_preset, list_presets

__all__ = [
    "AdmError",
    "CheckpointError",
    "LoadedModel",
    "MissingFileError",
    "UsageError",
    "__version__",
    "default_device",
    "get_preset",
    "list_presets",
    "load_model",
]
