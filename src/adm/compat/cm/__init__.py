"""Drop-in names for scripts written against ``cm`` (openai/consistency_models).

Change ``from cm.script_util import ...`` to ``from adm.compat.cm import ...``, import its modules
under their own names (``adm.compat.cm.script_util``, ``.karras_diffusion``, ``.random_util``,
``.unet``, ``.nn``; ``.dist_util``, ``.logger`` and ``.losses`` are ``adm.compat``'s, identical in
both codebases), or leave the code as it is and call ``adm.compat.install()``
(``python -m adm.compat scripts/image_sample.py ...``): ``import cm...`` then resolves here.
A veneer over adm's layers (the model adapter, ``KarrasSchedule``, adm's samplers). Importing this
package imports nothing heavy.
"""

from __future__ import annotations

from adm.compat.forward import forwarding

SUBMODULES = ("karras_diffusion", "nn", "random_util", "script_util", "unet")
SHARED = ("dist_util", "logger", "losses")  # guided-diffusion's modules, unchanged in consistency_models
_HOMES = {  # name -> the submodule that defines it
    **dict.fromkeys(("KarrasDenoiser", "get_sigmas_karras", "karras_sample"), "karras_diffusion"),
    **dict.fromkeys(("get_generator",), "random_util"),
    **dict.fromkeys(("UNetModel",), "unet"),
    **dict.fromkeys(
        ("NUM_CLASSES", "add_dict_to_argparser", "args_to_dict", "cm_train_defaults", "create_model",
         "create_model_and_diffusion", "model_and_diffusion_defaults", "str2bool"),
        "script_util",
    ),
}


module_path, __getattr__, __dir__ = forwarding(__name__, _HOMES, SUBMODULES, SHARED)

__all__ = sorted(_HOMES)
