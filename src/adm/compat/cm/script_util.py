"""``cm.script_util`` (consistency_models) with its names, defaults and keyword arguments.

The defaults are ``adm.spec.flags``' for ``--family consistency-models`` (``FAMILY_DEFAULTS``:
attention at 32, 16 and 8 px) and the network comes from ``adm.spec.factory``, so a model built here
is the model a consistency_models preset builds: guided-diffusion's U-Net with (3, heads, d)
attention, which loads the reference's 4-D attention weights. ``create_model`` keeps the
reference's own defaults (one head, attention at 16 px, no scale-shift norm), as guided-diffusion's
does. ``distillation`` selects the consistency boundary condition (the reference's scripts pass
``"consistency" in training_mode``).
"""

from __future__ import annotations

from adm.compat.cm.karras_diffusion import KarrasDenoiser
from adm.compat.cm.unet import UNetModel
from adm.compat.script_util import add_dict_to_argparser, args_to_dict
from adm.spec.factory import unet_kwargs
from adm.spec.flags import ModelFlags, parse_flags, str2bool

NUM_CLASSES = 1000
FAMILY = "consistency-models"

_DEFAULT_KEYS = (  # model_and_diffusion_defaults(), in the original's order
    "sigma_min", "sigma_max", "image_size", "num_channels", "num_res_blocks", "num_heads", "num_heads_upsample",
    "num_head_channels", "attention_resolutions", "channel_mult", "dropout", "class_cond", "use_checkpoint",
    "use_scale_shift_norm", "resblock_updown", "use_fp16", "use_new_attention_order", "learn_sigma", "weight_schedule",
)
_MODEL_KEYS = (
    "channel_mult", "learn_sigma", "class_cond", "use_checkpoint", "attention_resolutions", "num_heads",
    "num_head_channels", "num_heads_upsample", "use_scale_shift_norm", "dropout", "resblock_updown", "use_fp16",
    "use_new_attention_order",
)


def _flags(args: dict) -> ModelFlags:
    return parse_flags(ModelFlags, {**args, "family": FAMILY})


def cm_train_defaults() -> dict:
    """The reference's training-script defaults (consistency distillation from a teacher, LPIPS)."""
    return dict(
        teacher_model_path="", teacher_dropout=0.1, training_mode="consistency_distillation", target_ema_mode="fixed",
        scale_mode="fixed", total_training_steps=600000, start_ema=0.0, start_scales=40, end_scales=40,
        distill_steps_per_iter=50000, loss_norm="lpips",
    )


def model_and_diffusion_defaults() -> dict:
    flags = _flags({})
    return {k: getattr(flags, k) for k in _DEFAULT_KEYS}


def create_model_and_diffusion(
    image_size, class_cond, learn_sigma, num_channels, num_res_blocks, channel_mult, num_heads, num_head_channels,
    num_heads_upsample, attention_resolutions, dropout, use_checkpoint, use_scale_shift_norm, resblock_updown,
    use_fp16, use_new_attention_order, weight_schedule, sigma_min=0.002, sigma_max=80.0, distillation=False,
):
    args = dict(locals())
    mode = "consistency_distillation" if distillation else "edm"
    flags = _flags({k: args[k] for k in (*_MODEL_KEYS, "image_size", "num_channels", "num_res_blocks",
                                         "weight_schedule", "sigma_min", "sigma_max")} | {"training_mode": mode})
    model = create_model(image_size, num_channels, num_res_blocks, **{k: args[k] for k in _MODEL_KEYS})
    diffusion = KarrasDenoiser(sigma_data=flags.sigma_data, sigma_max=sigma_max, sigma_min=sigma_min,
                               distillation=distillation, weight_schedule=weight_schedule)
    return model, diffusion


def create_model(
    image_size, num_channels, num_res_blocks, channel_mult="", learn_sigma=False, class_cond=False,
    use_checkpoint=False, attention_resolutions="16", num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
    use_scale_shift_norm=False, dropout=0, resblock_updown=False, use_fp16=False, use_new_attention_order=False,
):
    kwargs = unet_kwargs(_flags(dict(locals())))
    kwargs.pop("attention_order")  # (3, heads, d) for this family: UNetModel sets it
    return UNetModel(**kwargs, use_fp16=use_fp16, use_new_attention_order=use_new_attention_order)


__all__ = [
    "NUM_CLASSES", "KarrasDenoiser", "UNetModel", "add_dict_to_argparser", "args_to_dict", "cm_train_defaults",
    "create_model", "create_model_and_diffusion", "model_and_diffusion_defaults", "str2bool",
]
