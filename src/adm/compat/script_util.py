"""``guided_diffusion.script_util`` with the same names, defaults and keyword arguments.

Every factory goes through ``adm.spec.flags`` and ``adm.spec.factory``, so a model built here is the model a
preset builds. Note the original's quirk, kept on purpose: ``create_model``'s own defaults
(``num_heads=1``, ``attention_resolutions="16"``, ``use_scale_shift_norm=False``) differ from
``model_and_diffusion_defaults()``.
"""

from __future__ import annotations

import argparse

from adm.compat import gaussian_diffusion as gd  # the original's alias, which forks use
from adm.compat.diffusion import SpacedDiffusion, create_gaussian_diffusion, space_timesteps
from adm.compat.models import EncoderUNetModel, SuperResModel, UNetModel
from adm.spec.factory import classifier_kwargs, unet_kwargs
from adm.spec.flags import ClassifierFlags, ModelFlags, SuperResFlags, parse_flags, str2bool

NUM_CLASSES = 1000

_DIFFUSION_KEYS = (
    "learn_sigma", "diffusion_steps", "noise_schedule", "timestep_respacing",
    "use_kl", "predict_xstart", "rescale_timesteps", "rescale_learned_sigmas",
)
_MODEL_KEYS = (
    "image_size", "num_channels", "num_res_blocks", "num_heads", "num_heads_upsample",
    "num_head_channels", "attention_resolutions", "channel_mult", "dropout", "class_cond",
    "use_checkpoint", "use_scale_shift_norm", "resblock_updown", "use_fp16", "use_new_attention_order",
)
_CLASSIFIER_KEYS = (
    "image_size", "classifier_use_fp16", "classifier_width", "classifier_depth",
    "classifier_attention_resolutions", "classifier_use_scale_shift_norm",
    "classifier_resblock_updown", "classifier_pool",
)


def _defaults(flags, keys) -> dict:
    return {k: getattr(flags, k) for k in keys}


def diffusion_defaults() -> dict:
    return _defaults(ModelFlags(), _DIFFUSION_KEYS)


def model_and_diffusion_defaults() -> dict:
    return {**_defaults(ModelFlags(), _MODEL_KEYS), **diffusion_defaults()}


def classifier_defaults() -> dict:
    return _defaults(ClassifierFlags(), _CLASSIFIER_KEYS)


def classifier_and_diffusion_defaults() -> dict:
    return {**classifier_defaults(), **diffusion_defaults()}


def sr_model_and_diffusion_defaults() -> dict:
    base = model_and_diffusion_defaults()
    for key in ("image_size", "channel_mult", "use_new_attention_order"):
        base.pop(key)
    return {**base, "large_size": 256, "small_size": 64}


def create_model(
    image_size, num_channels, num_res_blocks, channel_mult="", learn_sigma=False, class_cond=False,
    use_checkpoint=False, attention_resolutions="16", num_heads=1, num_head_channels=-1,
    num_heads_upsample=-1, use_scale_shift_norm=False, dropout=0, resblock_updown=False,
    use_fp16=False, use_new_attention_order=False,
):
    flags = parse_flags(ModelFlags, {k: v for k, v in locals().items()})
    kwargs = unet_kwargs(flags)
    kwargs.pop("attention_order")
    return UNetModel(**kwargs, use_fp16=use_fp16, use_new_attention_order=use_new_attention_order)


def create_gaussian_diffusion_from(args: dict):
    return create_gaussian_diffusion(
        steps=args["diffusion_steps"], learn_sigma=args["learn_sigma"], noise_schedule=args["noise_schedule"],
        use_kl=args["use_kl"], predict_xstart=args["predict_xstart"], rescale_timesteps=args["rescale_timesteps"],
        rescale_learned_sigmas=args["rescale_learned_sigmas"], timestep_respacing=args["timestep_respacing"],
    )


def create_model_and_diffusion(
    image_size, class_cond, learn_sigma, num_channels, num_res_blocks, channel_mult, num_heads,
    num_head_channels, num_heads_upsample, attention_resolutions, dropout, diffusion_steps,
    noise_schedule, timestep_respacing, use_kl, predict_xstart, rescale_timesteps,
    rescale_learned_sigmas, use_checkpoint, use_scale_shift_norm, resblock_updown, use_fp16,
    use_new_attention_order,
):
    args = dict(locals())
    model = create_model(**{k: args[k] for k in _MODEL_KEYS if k != "num_channels"}, num_channels=num_channels,
                         learn_sigma=learn_sigma)
    return model, create_gaussian_diffusion_from(args)


def create_classifier(
    image_size, classifier_use_fp16, classifier_width, classifier_depth, classifier_attention_resolutions,
    classifier_use_scale_shift_norm, classifier_resblock_updown, classifier_pool,
):
    flags = parse_flags(ClassifierFlags, dict(locals()))
    return EncoderUNetModel(**classifier_kwargs(flags), use_fp16=classifier_use_fp16)


def create_classifier_and_diffusion(
    image_size, classifier_use_fp16, classifier_width, classifier_depth, classifier_attention_resolutions,
    classifier_use_scale_shift_norm, classifier_resblock_updown, classifier_pool, learn_sigma,
    diffusion_steps, noise_schedule, timestep_respacing, use_kl, predict_xstart, rescale_timesteps,
    rescale_learned_sigmas,
):
    args = dict(locals())
    classifier = create_classifier(**{k: args[k] for k in _CLASSIFIER_KEYS})
    return classifier, create_gaussian_diffusion_from(args)


def sr_create_model(
    large_size, small_size, num_channels, num_res_blocks, learn_sigma, class_cond, use_checkpoint,
    attention_resolutions, num_heads, num_head_channels, num_heads_upsample, use_scale_shift_norm,
    dropout, resblock_updown, use_fp16,
):
    flags = parse_flags(SuperResFlags, dict(locals()))
    kwargs = unet_kwargs(flags)
    kwargs.pop("attention_order")
    return SuperResModel(**kwargs, use_fp16=use_fp16)


def sr_create_model_and_diffusion(
    large_size, small_size, class_cond, learn_sigma, num_channels, num_res_blocks, num_heads,
    num_head_channels, num_heads_upsample, attention_resolutions, dropout, diffusion_steps,
    noise_schedule, timestep_respacing, use_kl, predict_xstart, rescale_timesteps,
    rescale_learned_sigmas, use_checkpoint, use_scale_shift_norm, resblock_updown, use_fp16,
):
    args = dict(locals())
    keys = ("large_size", "small_size", "num_channels", "num_res_blocks", "learn_sigma", "class_cond",
            "use_checkpoint", "attention_resolutions", "num_heads", "num_head_channels", "num_heads_upsample",
            "use_scale_shift_norm", "dropout", "resblock_updown", "use_fp16")
    return sr_create_model(**{k: args[k] for k in keys}), create_gaussian_diffusion_from(args)


def add_dict_to_argparser(parser: argparse.ArgumentParser, default_dict: dict) -> None:
    """The original's flag syntax: ``--key value`` typed by the default, booleans via str2bool."""
    for key, value in default_dict.items():
        value_type = type(value)
        if value is None:
            value_type = str
        elif isinstance(value, bool):
            value_type = str2bool
        parser.add_argument(f"--{key}", default=value, type=value_type)


def args_to_dict(args, keys) -> dict:
    return {k: getattr(args, k) for k in keys}


__all__ = [
    "NUM_CLASSES", "EncoderUNetModel", "SpacedDiffusion", "SuperResModel", "UNetModel", "add_dict_to_argparser",
    "args_to_dict", "classifier_and_diffusion_defaults", "classifier_defaults", "create_classifier",
    "create_classifier_and_diffusion", "create_gaussian_diffusion", "create_model", "create_model_and_diffusion",
    "diffusion_defaults", "gd", "model_and_diffusion_defaults", "space_timesteps", "sr_create_model",
    "sr_create_model_and_diffusion", "sr_model_and_diffusion_defaults", "str2bool",
]
