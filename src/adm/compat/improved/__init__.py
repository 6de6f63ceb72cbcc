"""Drop-in names for scripts written against ``improved_diffusion`` (openai/improved-diffusion).

Change ``from improved_diffusion.script_util import ...`` to ``from adm.compat.improved import ...``,
import its modules under their own names (``adm.compat.improved.script_util``, ``.gaussian_diffusion``,
``.respace``, ``.unet``; ``.nn``, ``.losses``, ``.dist_util`` and ``.logger`` are the very modules
of ``adm.compat``, identical in both codebases), or leave the code as it is and call
``adm.compat.install()`` (``python -m adm.compat script.py``): ``import improved_diffusion...`` then
resolves here. Like ``adm.compat`` itself, a veneer over adm's layers with improved-diffusion's
defaults and signatures. Importing this package imports nothing heavy.
"""

from __future__ import annotations

from adm.compat.forward import forwarding

SUBMODULES = ("gaussian_diffusion", "respace", "script_util", "unet")
SHARED = ("dist_util", "logger", "losses", "nn")  # guided-diffusion's modules, unchanged in improved-diffusion
_HOMES = {  # name -> the submodule that defines it
    **dict.fromkeys(
        ("GaussianDiffusion", "LossType", "ModelMeanType", "ModelVarType", "get_named_beta_schedule"),
        "gaussian_diffusion",
    ),
    **dict.fromkeys(("SpacedDiffusion", "space_timesteps"), "respace"),
    **dict.fromkeys(("SuperResModel", "UNetModel"), "unet"),
    **dict.fromkeys(
        ("NUM_CLASSES", "add_dict_to_argparser", "args_to_dict", "create_gaussian_diffusion", "create_model",
         "create_model_and_diffusion", "model_and_diffusion_defaults", "sr_create_model",
         "sr_create_model_and_diffusion", "sr_model_and_diffusion_defaults", "str2bool"),
        "script_util",
    ),
}


module_path, __getattr__, __dir__ = forwarding(__name__, _HOMES, SUBMODULES, SHARED)

__all__ = sorted(_HOMES)
