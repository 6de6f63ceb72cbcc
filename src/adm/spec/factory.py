"""Flags → modules: the one place where the original's flag vocabulary meets adm's typed layers.

``create_model`` & co. in ``adm.compat`` and every preset go through these functions, so there is
a single mapping from a flag set to a network and a diffusion process.
"""

from __future__ import annotations

from typing import Any

import torch

from adm.core.errors import UsageError
from adm.models import NoisyClassifier, SuperResUNet, UNet
from adm.spec.flags import (
    ClassifierFlags,
    DiffusionFlags,
    ModelFlags,
    SuperResFlags,
    attention_downsample_rates,
    channel_mult,
)


def _heads_fit(width: int, num_heads: int, num_head_channels: int, what: str) -> None:
    if num_head_channels != -1 and width % num_head_channels:
        raise UsageError(f"{what}: attention width {width} is not divisible by num_head_channels {num_head_channels}")
    if num_head_channels == -1 and width % num_heads:
        raise UsageError(f"{what}: attention width {width} is not divisible by num_heads {num_heads}")


def unet_kwargs(flags: ModelFlags | SuperResFlags) -> dict[str, Any]:
    """Constructor arguments of ``UNet`` / ``SuperResUNet`` for a flag set (as create_model builds them)."""
    is_sr = isinstance(flags, SuperResFlags)
    mults = channel_mult(flags)
    rates = attention_downsample_rates(flags)
    for level, mult in enumerate(mults):
        if 2**level in rates or level == len(mults) - 1:
            width = int(mult * flags.num_channels)
            _heads_fit(width, flags.num_heads, flags.num_head_channels, "model")
            if flags.num_heads_upsample != -1:
                _heads_fit(width, flags.num_heads_upsample, flags.num_head_channels, "model decoder")
    return dict(
        image_size=flags.large_size if is_sr else flags.image_size,
        in_channels=flags.in_channels,
        model_channels=flags.num_channels,
        out_channels=flags.in_channels * (2 if flags.learn_sigma else 1),
        num_res_blocks=flags.num_res_blocks,
        attention_resolutions=rates,
        dropout=flags.dropout,
        channel_mult=mults,
        num_classes=flags.num_classes + int(flags.null_class) if flags.class_cond else None,
        use_checkpoint=flags.use_checkpoint,
        num_heads=flags.num_heads,
        num_head_channels=flags.num_head_channels,
        num_heads_upsample=flags.num_heads_upsample,
        use_scale_shift_norm=flags.use_scale_shift_norm,
        resblock_updown=flags.resblock_updown,
        attention_order=attention_order(flags),
    )


def null_label(flags: ModelFlags | SuperResFlags) -> int | None:
    """The label that means "no class" (classifier-free guidance), or None when the flags have none.

    With ``--null_class True`` the label embedding has one row more than ``num_classes``; the last
    one, index ``num_classes``, is what label dropout trains and unconditional sampling feeds.
    """
    return flags.num_classes if flags.class_cond and flags.null_class else None


def attention_order(flags: ModelFlags | SuperResFlags) -> str:
    """The qkv layout: sr_create_model never passes use_new_attention_order (upsamplers are legacy
    order); consistency_models' attention is always (3, heads, d), whatever the flag says."""
    if isinstance(flags, SuperResFlags):
        return "legacy"
    return "new" if flags.use_new_attention_order or flags.family == "consistency-models" else "legacy"


def classifier_kwargs(flags: ClassifierFlags) -> dict[str, Any]:
    """Constructor arguments of ``NoisyClassifier`` (as create_classifier builds them)."""
    mults = channel_mult(flags)
    rates = attention_downsample_rates(flags)
    for level, mult in enumerate(mults):
        if 2**level in rates or level == len(mults) - 1:
            _heads_fit(int(mult * flags.classifier_width), 1, flags.classifier_num_head_channels, "classifier")
    return dict(
        image_size=flags.image_size,
        in_channels=flags.classifier_in_channels,
        model_channels=flags.classifier_width,
        out_channels=flags.classifier_num_classes,
        num_res_blocks=flags.classifier_depth,
        attention_resolutions=rates,
        channel_mult=mults,
        num_head_channels=flags.classifier_num_head_channels,
        use_scale_shift_norm=flags.classifier_use_scale_shift_norm,
        resblock_updown=flags.classifier_resblock_updown,
        pool=flags.classifier_pool,
    )


def build_model(flags: ModelFlags | SuperResFlags, device: torch.device | str | None = None) -> UNet:
    """The diffusion network for ``flags`` (on the meta device, it costs no memory)."""
    kwargs = unet_kwargs(flags)
    with torch.device(device or "cpu"):
        return SuperResUNet(**kwargs) if isinstance(flags, SuperResFlags) else UNet(**kwargs)


def build_classifier(flags: ClassifierFlags, device: torch.device | str | None = None) -> NoisyClassifier:
    kwargs = classifier_kwargs(flags)
    with torch.device(device or "cpu"):
        return NoisyClassifier(**kwargs)


def build_network(flags: ModelFlags | SuperResFlags | ClassifierFlags,
                  device: torch.device | str | None = None) -> torch.nn.Module:
    """The network any flag set describes: the noisy classifier for classifier flags, else the U-Net."""
    return build_classifier(flags, device) if isinstance(flags, ClassifierFlags) else build_model(flags, device)


def parameterization(flags: DiffusionFlags):
    """``(ModelAdapter, LossType)``: how the network's output is read, and the training loss.

    VP flags as ``create_gaussian_diffusion`` derives them (learned or fixed variance; ε, x_0 or,
    as an extension, v); consistency_models' ``--training_mode`` gives EDM preconditioning or the
    consistency boundary condition (``distillation`` in its builder). A VP network's consistency
    student (``adm distill``) is the boundary condition over its own VP reading (``ConsistencyOver``).
    """
    from adm.diffusion.adapters import EDM, ConsistencyBoundary, ConsistencyOver, vp_adapter
    from adm.diffusion.process import LossType, ModelMeanType, ModelVarType

    if isinstance(flags, ModelFlags) and flags.is_karras:
        if flags.training_mode == "edm":
            return EDM(flags.sigma_data), LossType.MSE
        return ConsistencyBoundary(flags.sigma_data, flags.sigma_min), LossType.MSE
    if isinstance(flags, ModelFlags) and flags.is_consistency:
        inner, loss = parameterization(flags.replace(training_mode=""))
        return ConsistencyOver(inner, flags.sigma_min, flags.sigma_data), loss
    if flags.learn_sigma:
        variance = ModelVarType.LEARNED_RANGE
    else:
        variance = ModelVarType.FIXED_SMALL if flags.sigma_small else ModelVarType.FIXED_LARGE
    if flags.predict_xstart:
        mean = ModelMeanType.START_X
    elif flags.predict_v:
        mean = ModelMeanType.VELOCITY
    else:
        mean = ModelMeanType.EPSILON
    if flags.use_kl:
        loss = LossType.RESCALED_KL
    elif flags.rescale_learned_sigmas:
        loss = LossType.RESCALED_MSE
    else:
        loss = LossType.MSE
    return vp_adapter(mean, variance), loss


def noise_schedule(flags: DiffusionFlags):
    """The noise levels the network was trained on and how it is told them (``Schedule``)."""
    from adm.diffusion.continuous import BoundedSchedule, NoiseSchedule
    from adm.diffusion.karras import KarrasSchedule
    from adm.diffusion.schedules import beta_schedule

    if isinstance(flags, ModelFlags) and flags.is_karras:
        return KarrasSchedule(flags.sigma_min, flags.sigma_max)
    if isinstance(flags, ModelFlags) and flags.is_consistency:  # a VP network's consistency student
        betas = beta_schedule(flags.noise_schedule, flags.diffusion_steps)
        return BoundedSchedule(betas, flags.rescale_timesteps, low=flags.sigma_min, high=flags.sigma_max)
    return NoiseSchedule.create(flags.noise_schedule, flags.diffusion_steps, flags.rescale_timesteps)


def noise_process(flags: ModelFlags | SuperResFlags) -> tuple:
    """What identifies a network's noise process and parameterisation: two networks with the same
    can have their raw outputs mixed at one input (autoguidance)."""
    adapter = type(parameterization(flags)[0]).__name__
    if isinstance(flags, ModelFlags) and flags.is_karras:
        return adapter, flags.sigma_min, flags.sigma_max, flags.sigma_data
    vp = adapter, flags.noise_schedule, flags.diffusion_steps, flags.rescale_timesteps
    if isinstance(flags, ModelFlags) and flags.is_consistency:
        return (*vp, flags.sigma_min, flags.sigma_max, flags.sigma_data)
    return vp


def default_sampler(flags: ModelFlags | SuperResFlags) -> str:
    """How a model without a preset is sampled unless told: as its own family's code samples it
    (the original's ancestral chain; Heun for an EDM model, one consistency step for a consistency model)."""
    if isinstance(flags, ModelFlags) and flags.is_consistency:
        return "cm"
    if isinstance(flags, ModelFlags) and flags.is_karras:
        return "heun"
    return "ddpm"


def build_process(flags: DiffusionFlags, respacing: str | None = None):
    """``(process, adapter, loss_type)`` for a VP flag set (the original's discrete chain).

    ``respacing`` overrides the flags' ``timestep_respacing`` (sampling picks its own steps).
    """
    from adm.diffusion.process import GaussianProcess

    if isinstance(flags, ModelFlags) and (flags.is_karras or flags.is_consistency):
        raise UsageError(f"--training_mode {flags.training_mode} models have no discrete Gaussian chain",
                         "adm train and the original's chain need guided-/improved-diffusion (VP) flags; "
                         "sample such models with heun, cm or a solver")

    process = GaussianProcess.create(
        schedule=flags.noise_schedule,
        num_steps=flags.diffusion_steps,
        respacing=flags.timestep_respacing if respacing is None else respacing,
        rescale_timesteps=flags.rescale_timesteps,
    )
    return (process, *parameterization(flags))
