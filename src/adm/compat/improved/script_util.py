"""``improved_diffusion.script_util`` with its own names, defaults and keyword arguments.

improved-diffusion's defaults are not guided-diffusion's: ``rescale_timesteps`` and
``rescale_learned_sigmas`` are True, there is no ``num_head_channels`` / ``resblock_updown`` /
``use_fp16`` / ``use_new_attention_order`` / ``channel_mult`` (the multipliers come from the image
size, 32 → (1, 2, 2, 2) for CIFAR-10), and ``create_model`` takes every argument. The defaults are
``adm.spec.flags``' for ``--family improved-diffusion`` (``FAMILY_DEFAULTS``) and the networks come
from ``adm.spec.factory``, so a model built here is the model an improved-diffusion preset builds.
"""

from __future__ import annotations

from adm.compat import diffusion as guided
from adm.compat.improved import gaussian_diffusion as gd  # the original's alias, which forks use
from adm.compat.improved.respace import SpacedDiffusion, space_timesteps
from adm.compat.improved.unet import SuperResModel, UNetModel
from adm.compat.script_util import add_dict_to_argparser, args_to_dict
from adm.spec.factory import unet_kwargs
from adm.spec.flags import ModelFlags, SuperResFlags, parse_flags, str2bool

NUM_CLASSES = 1000
FAMILY = "improved-diffusion"

_DEFAULT_KEYS = (  # model_and_diffusion_defaults(), in the original's order
    "image_size", "num_channels", "num_res_blocks", "num_heads", "num_heads_upsample", "attention_resolutions",
    "dropout", "learn_sigma", "sigma_small", "class_cond", "diffusion_steps", "noise_schedule", "timestep_respacing",
    "use_kl", "predict_xstart", "rescale_timesteps", "rescale_learned_sigmas", "use_checkpoint", "use_scale_shift_norm",
)
_MODEL_KEYS = (
    "num_channels", "num_res_blocks", "learn_sigma", "class_cond", "use_checkpoint", "attention_resolutions",
    "num_heads", "num_heads_upsample", "use_scale_shift_norm", "dropout",
)
# guided-diffusion's U-Net arguments improved-diffusion's constructor does not have (always their defaults).
_GUIDED_ONLY = ("image_size", "num_head_channels", "resblock_updown", "attention_order")


def _flags(cls, args: dict):
    return parse_flags(cls, {**args, "family": FAMILY})


def _network_kwargs(flags) -> dict:
    """improved-diffusion's ``UNetModel`` / ``SuperResModel`` arguments for a flag set."""
    kwargs = unet_kwargs(flags)
    for name in _GUIDED_ONLY:
        kwargs.pop(name)
    return kwargs


def model_and_diffusion_defaults() -> dict:
    flags = _flags(ModelFlags, {})
    return {k: getattr(flags, k) for k in _DEFAULT_KEYS}


def sr_model_and_diffusion_defaults() -> dict:
    """``model_and_diffusion_defaults()`` less what the upsampler does not take, plus its two sizes."""
    flags = _flags(SuperResFlags, {})
    kept = {k: v for k, v in model_and_diffusion_defaults().items() if k not in ("image_size", "sigma_small")}
    return {**kept, "large_size": flags.large_size, "small_size": flags.small_size}


def create_model(
    image_size, num_channels, num_res_blocks, learn_sigma, class_cond, use_checkpoint, attention_resolutions,
    num_heads, num_heads_upsample, use_scale_shift_norm, dropout,
):
    return UNetModel(**_network_kwargs(_flags(ModelFlags, dict(locals()))))


def create_model_and_diffusion(
    image_size, class_cond, learn_sigma, sigma_small, num_channels, num_res_blocks, num_heads, num_heads_upsample,
    attention_resolutions, dropout, diffusion_steps, noise_schedule, timestep_respacing, use_kl, predict_xstart,
    rescale_timesteps, rescale_learned_sigmas, use_checkpoint, use_scale_shift_norm,
):
    args = dict(locals())
    model = create_model(image_size, **{k: args[k] for k in _MODEL_KEYS})
    return model, _diffusion_from(args, sigma_small=sigma_small)


def sr_create_model(
    large_size, small_size, num_channels, num_res_blocks, learn_sigma, class_cond, use_checkpoint,
    attention_resolutions, num_heads, num_heads_upsample, use_scale_shift_norm, dropout,
):
    return SuperResModel(**_network_kwargs(_flags(SuperResFlags, dict(locals()))))


def sr_create_model_and_diffusion(
    large_size, small_size, class_cond, learn_sigma, num_channels, num_res_blocks, num_heads, num_heads_upsample,
    attention_resolutions, dropout, diffusion_steps, noise_schedule, timestep_respacing, use_kl, predict_xstart,
    rescale_timesteps, rescale_learned_sigmas, use_checkpoint, use_scale_shift_norm,
):
    args = dict(locals())
    model = sr_create_model(large_size, small_size, **{k: args[k] for k in _MODEL_KEYS})
    return model, _diffusion_from(args)  # the original passes no sigma_small here


def _diffusion_from(args: dict, **extra) -> SpacedDiffusion:
    return create_gaussian_diffusion(
        steps=args["diffusion_steps"], learn_sigma=args["learn_sigma"], noise_schedule=args["noise_schedule"],
        use_kl=args["use_kl"], predict_xstart=args["predict_xstart"], rescale_timesteps=args["rescale_timesteps"],
        rescale_learned_sigmas=args["rescale_learned_sigmas"], timestep_respacing=args["timestep_respacing"], **extra,
    )


def create_gaussian_diffusion(
    *, steps=1000, learn_sigma=False, sigma_small=False, noise_schedule="linear", use_kl=False,
    predict_xstart=False, rescale_timesteps=False, rescale_learned_sigmas=False, timestep_respacing="",
) -> SpacedDiffusion:
    """guided-diffusion's ``create_gaussian_diffusion`` (the same flags and choices) as
    improved-diffusion's ``SpacedDiffusion``."""
    spaced = guided.create_gaussian_diffusion(**locals())
    return SpacedDiffusion(
        use_timesteps=spaced.use_timesteps, betas=gd.get_named_beta_schedule(noise_schedule, steps),
        model_mean_type=spaced.model_mean_type, model_var_type=spaced.model_var_type, loss_type=spaced.loss_type,
        rescale_timesteps=rescale_timesteps,
    )


__all__ = [
    "NUM_CLASSES", "SpacedDiffusion", "SuperResModel", "UNetModel", "add_dict_to_argparser", "args_to_dict",
    "create_gaussian_diffusion", "create_model", "create_model_and_diffusion", "gd", "model_and_diffusion_defaults",
    "space_timesteps", "sr_create_model", "sr_create_model_and_diffusion", "sr_model_and_diffusion_defaults",
    "str2bool",
]
