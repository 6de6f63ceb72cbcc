"""Drop-in names for scripts written against ``guided_diffusion``.

Change ``from guided_diffusion.script_util import ...`` to ``from adm.compat import ...``. Everything
here is a veneer over adm's own layers (``adm.models``, ``adm.diffusion``, ``adm.sampling``), so
the golden vectors that exercise this layer check the code the rest of adm runs.
"""

from adm.compat.diffusion import (
    GaussianDiffusion,
    LossType,
    ModelMeanType,
    ModelVarType,
    SpacedDiffusion,
    create_gaussian_diffusion,
    get_named_beta_schedule,
    space_timesteps,
)
from adm.compat.models import EncoderUNetModel, SuperResModel, UNetModel
from adm.compat.script_util import (
    NUM_CLASSES,
    add_dict_to_argparser,
    args_to_dict,
    classifier_and_diffusion_defaults,
    classifier_defaults,
    create_classifier,
    create_classifier_and_diffusion,
    create_model,
    create_model_and_diffusion,
    diffusion_defaults,
    model_and_diffusion_defaults,
    sr_create_model,
    sr_create_model_and_diffusion,
    sr_model_and_diffusion_defaults,
    str2bool,
)

__all__ = [
    "NUM_CLASSES",
    "EncoderUNetModel",
    "GaussianDiffusion",
    "LossType",
    "ModelMeanType",
    "ModelVarType",
    "SpacedDiffusion",
    "SuperResModel",
    "UNetModel",
    "add_dict_to_argparser",
    "args_to_dict",
    "classifier_and_diffusion_defaults",
    "classifier_defaults",
    "create_classifier",
    "create_classifier_and_diffusion",
    "create_gaussian_diffusion",
    "create_model",
    "create_model_and_diffusion",
    "diffusion_defaults",
    "get_named_beta_schedule",
    "model_and_diffusion_defaults",
    "space_timesteps",
    "sr_create_model",
    "sr_create_model_and_diffusion",
    "sr_model_and_diffusion_defaults",
    "str2bool",
]
