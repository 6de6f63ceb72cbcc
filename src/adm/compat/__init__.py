"""Drop-in names for scripts written against ``guided_diffusion``.

Change ``from guided_diffusion.script_util import ...`` to ``from adm.compat import ...``, import the
original's modules under their own names (``adm.compat.gaussian_diffusion``, ``.respace``, ``.unet``,
``.nn``, ``.script_util``, ``.losses``, ``.dist_util``, ``.logger``), or leave the code as it is and
call ``adm.compat.install()`` (or run it with ``python -m adm.compat script.py``): then
``import guided_diffusion...`` resolves to these modules. The same for the family's other code:
``adm.compat.improved`` stands for ``improved_diffusion`` and ``adm.compat.cm`` for consistency_models'
``cm``, each with its own defaults and signatures. Everything here is a veneer over adm's own
layers (``adm.models``, ``adm.diffusion``, ``adm.sampling``), so the golden vectors that exercise
this layer check the code the rest of adm runs.

Importing this package imports nothing heavy: each name is loaded when first used.
"""

from __future__ import annotations

import importlib

from adm.compat.alias import install, installed, is_installed, uninstall

_HOMES = {  # name -> the submodule that defines it
    **dict.fromkeys(
        ("GaussianDiffusion", "LossType", "ModelMeanType", "ModelVarType", "SpacedDiffusion",
         "create_gaussian_diffusion", "get_named_beta_schedule", "space_timesteps"),
        "diffusion",
    ),
    **dict.fromkeys(("EncoderUNetModel", "SuperResModel", "UNetModel"), "models"),
    **dict.fromkeys(
        ("NUM_CLASSES", "add_dict_to_argparser", "args_to_dict", "classifier_and_diffusion_defaults",
         "classifier_defaults", "create_classifier", "create_classifier_and_diffusion", "create_model",
         "create_model_and_diffusion", "diffusion_defaults", "model_and_diffusion_defaults", "sr_create_model",
         "sr_create_model_and_diffusion", "sr_model_and_diffusion_defaults", "str2bool"),
        "script_util",
    ),
}
SUBMODULES = (
    "alias", "diffusion", "dist_util", "gaussian_diffusion", "logger", "losses", "models", "nn", "respace",
    "script_util", "unet",
    "improved", "cm",  # the other families: improved_diffusion's and consistency_models' names
)


def __getattr__(name: str):
    if name in _HOMES:
        value = getattr(importlib.import_module(f"adm.compat.{_HOMES[name]}"), name)
    elif name in SUBMODULES:
        value = importlib.import_module(f"adm.compat.{name}")
    else:
        raise AttributeError(f"module 'adm.compat' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES, *SUBMODULES})


__all__ = [
    "EncoderUNetModel", "GaussianDiffusion", "LossType", "ModelMeanType", "ModelVarType", "NUM_CLASSES",
    "SpacedDiffusion", "SuperResModel", "UNetModel", "add_dict_to_argparser", "args_to_dict",
    "classifier_and_diffusion_defaults", "classifier_defaults", "create_classifier",
    "create_classifier_and_diffusion", "create_gaussian_diffusion", "create_model",
    "create_model_and_diffusion", "diffusion_defaults", "get_named_beta_schedule", "install", "installed",
    "is_installed", "model_and_diffusion_defaults", "space_timesteps", "sr_create_model",
    "sr_create_model_and_diffusion", "sr_model_and_diffusion_defaults", "str2bool", "uninstall",
]
