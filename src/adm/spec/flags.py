"""Typed flag sets in the original's names, and parsing of ``--flag value`` strings.

The released checkpoints are described by guided-diffusion command-line flags (the README's
MODEL_FLAGS). Keeping the same names means a user can paste those strings unchanged, and a preset
can print exactly what the original would have been run with. Validation happens here, once, so
that a wrong flag is a one-line error instead of a wall of state_dict mismatches later.

Three flag sets mirror ``script_util``'s defaults dicts: ``ModelFlags`` (base model + diffusion,
``model_and_diffusion_defaults``), ``SuperResFlags`` (``sr_model_and_diffusion_defaults``) and
``ClassifierFlags`` (``classifier_defaults``). A few extension flags that the original hard-codes
(``num_classes``, the classifier's ``channel_mult``/head width, the image's channel count
``in_channels`` / ``classifier_in_channels``) are marked as such; their defaults reproduce the
original. ``null_class`` (classifier-free guidance's "no class" label) is adm's own.
"""

from __future__ import annotations

import shlex
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict

from adm.core.errors import UsageError
from adm.core.suggest import did_you_mean
from adm.core.validation import validated

DEFAULT_CHANNEL_MULT = {
    512: (0.5, 1, 1, 2, 2, 4, 4),
    256: (1, 1, 2, 2, 4, 4),
    128: (1, 1, 2, 3, 4),
    64: (1, 2, 3, 4),
    32: (1, 2, 2, 2),  # improved-diffusion's CIFAR-10 network (guided-diffusion has no 32 case)
}
# sr_create_model's own table: the 512 upsampler has no 0.5 level.
DEFAULT_SR_CHANNEL_MULT = {512: (1, 1, 2, 2, 4, 4), 256: (1, 1, 2, 2, 4, 4), 64: (1, 2, 3, 4)}


class _Flags(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def flag_dict(self) -> dict[str, Any]:
        """The flags as the original's argparse namespace would hold them."""
        return self.model_dump()

    def given(self) -> dict[str, Any]:
        """Only the flags that were set explicitly (``model_fields_set``), not defaulted.

        Merging flag sets through ``given()`` keeps that distinction, which decides for example
        whether training may take the number of classes from the data.
        """
        return {name: getattr(self, name) for name in self.model_fields_set}

    def replace(self, **changes: Any):
        """A copy with ``changes`` (validated again); the flags set so far stay set."""
        return parse_flags(type(self), {**self.given(), **changes})


Family = Literal["guided-diffusion", "improved-diffusion", "consistency-models"]
TrainingMode = Literal["", "edm", "consistency_distillation", "consistency_training"]
# What a guided-/improved-diffusion (VP) flag set may say of --training_mode besides nothing: a
# consistency student of that network (adm distill), read over its VP parameterisation.
VP_CONSISTENCY_MODES = ("consistency_distillation",)

# Each family's ``model_and_diffusion_defaults()`` where it differs from guided-diffusion's, so a
# flag string pasted from that family's README means what it meant there. consistency_models
# flag sets are recognised by ``--training_mode``; improved-diffusion's need ``--family``.
FAMILY_DEFAULTS: dict[str, dict[str, Any]] = {
    "guided-diffusion": {},
    "improved-diffusion": {"rescale_timesteps": True, "rescale_learned_sigmas": True},
    "consistency-models": {"attention_resolutions": "32,16,8", "training_mode": "edm"},
}


class DiffusionFlags(_Flags):
    """``diffusion_defaults()``: how the Gaussian process is set up."""

    learn_sigma: bool = False
    diffusion_steps: int = 1000
    noise_schedule: Literal["linear", "cosine"] = "linear"
    timestep_respacing: str = ""
    use_kl: bool = False
    predict_xstart: bool = False
    predict_v: bool = False  # extension: v-prediction (Salimans & Ho 2022) for user models
    rescale_timesteps: bool = False
    rescale_learned_sigmas: bool = False
    sigma_small: bool = False  # a create_gaussian_diffusion keyword the original never exposed


class _NetworkFlags(DiffusionFlags):
    num_channels: int = 128
    num_res_blocks: int = 2
    num_heads: int = 4
    num_heads_upsample: int = -1
    num_head_channels: int = -1
    attention_resolutions: str = "16,8"
    dropout: float = 0.0
    class_cond: bool = False
    use_checkpoint: bool = False
    use_scale_shift_norm: bool = True
    resblock_updown: bool = False
    use_fp16: bool = False
    num_classes: int = 1000  # extension: the original hard-codes NUM_CLASSES = 1000
    # extension (classifier-free guidance): label_emb has one extra row, index num_classes, meaning
    # "no class"; every other key and shape stays the original's (spec.factory.null_label)
    null_class: bool = False
    family: Family = "guided-diffusion"  # extension: whose defaults and conventions the flags use
    # extension: channels of the images the network makes (the original hard-codes 3, RGB); its
    # output has twice as many with a learned variance. `adm train` takes it from the data.
    in_channels: int = 3


class ModelFlags(_NetworkFlags):
    """``model_and_diffusion_defaults()``: a base (non-upsampling) diffusion model."""

    image_size: int = 64
    channel_mult: str = ""
    use_new_attention_order: bool = False
    # consistency_models' flags (cm/script_util.py): an EDM-preconditioned network ("edm") or a
    # consistency model (the boundary condition at sigma_min); "" is a Gaussian (VP) model.
    training_mode: TrainingMode = ""
    # the σ range: consistency_models' networks are trained on it; a VP consistency student (adm
    # distill) is the identity at sigma_min (its schedule's lowest σ) and starts at sigma_max
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5  # extension: hard-coded in KarrasDenoiser
    weight_schedule: Literal["karras", "snr", "snr+1", "truncated-snr", "uniform"] = "karras"

    @property
    def is_karras(self) -> bool:
        """A consistency_models network (EDM teacher or consistency model): continuous σ in
        [sigma_min, sigma_max], told 250·ln σ, EDM-preconditioned."""
        return bool(self.training_mode) and self.family == "consistency-models"

    @property
    def is_consistency(self) -> bool:
        """A consistency model, read through the boundary condition f(x, sigma_min) = x and sampled
        with ``cm``: consistency_models' own, or a guided-/improved-diffusion network distilled by
        ``adm distill`` (it keeps its VP schedule and timesteps, ``VP_CONSISTENCY_MODES``)."""
        return self.training_mode in ("consistency_distillation", "consistency_training")


class SuperResFlags(_NetworkFlags):
    """``sr_model_and_diffusion_defaults()``: an upsampler conditioned on a low-res image."""

    large_size: int = 256
    small_size: int = 64
    channel_mult: str = ""  # extension: the original derives it from large_size only


class ClassifierFlags(_Flags):
    """``classifier_defaults()``: the noisy classifier used for guidance."""

    image_size: int = 64
    classifier_use_fp16: bool = False
    classifier_width: int = 128
    classifier_depth: int = 2
    classifier_attention_resolutions: str = "32,16,8"
    classifier_use_scale_shift_norm: bool = True
    classifier_resblock_updown: bool = True
    classifier_pool: Literal["adaptive", "attention", "spatial", "spatial_v2"] = "attention"
    classifier_channel_mult: str = ""  # extension: the original derives it from image_size
    classifier_num_head_channels: int = 64  # extension: hard-coded 64 in create_classifier
    classifier_num_classes: int = 1000  # extension: hard-coded 1000 in the original
    classifier_in_channels: int = 3  # extension: the images' channels (hard-coded 3, RGB, in the original)


F = TypeVar("F", bound=_Flags)


def str2bool(value: str) -> bool:
    """The original's boolean flag syntax (``--class_cond True``)."""
    lowered = value.lower()
    if lowered in ("yes", "true", "t", "y", "1"):
        return True
    if lowered in ("no", "false", "f", "n", "0"):
        return False
    raise UsageError(f"expected a boolean (True/False), got {value!r}")


# Text flags whose empty value means "the default" (no respacing; multipliers from the size). A
# flag string rebuilt from a config.json, or one whose "" a shell swallowed, gives them no value
# at all: that is read as the empty value, as the original reads --timestep_respacing "".
EMPTY_VALUED = frozenset(
    name for cls in (ModelFlags, SuperResFlags, ClassifierFlags)
    for name, field in cls.model_fields.items() if field.annotation is str and field.default == ""
)


def split_flag_string(text: str) -> dict[str, str]:
    """``"--a 1 --b=2"`` → ``{"a": "1", "b": "2"}`` in the original's argparse syntax."""
    tokens = shlex.split(text)
    out: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--"):
            raise UsageError(f"unexpected value {token!r} in flags", "flags look like --name value")
        name = token[2:]
        if "=" in name:
            name, value = name.split("=", 1)
            i += 1
        elif i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
            value = tokens[i + 1]
            i += 2
        elif name.replace("-", "_") in EMPTY_VALUED:
            value = ""
            i += 1
        else:
            if name.replace("-", "_") in SCRIPT_FLAGS:
                raise _script_flag_error(name.replace("-", "_"), None, "a model or classifier")
            raise UsageError(f"flag --{name} has no value", "write it as --name value")
        out[name.replace("-", "_")] = value
    return out


# The original's sample / train scripts took these next to the model flags (SAMPLE_FLAGS,
# TRAIN_FLAGS in its README); people paste them into --model-flags. Each is an adm command
# option instead: name -> (the option, and for a boolean flag the option for False).
SCRIPT_FLAGS: dict[str, tuple[str, str | None]] = {
    "classifier_scale": ("--scale", None),
    "batch_size": ("--batch-size", None),
    "num_samples": ("--num-samples", None),
    "use_ddim": ("--sampler ddim", "--sampler ddpm"),
    "clip_denoised": ("--clip-denoised", "--no-clip-denoised"),
    "model_path": ("--model-path", None),
    "classifier_path": ("--classifier-path", None),
    "base_samples": ("--base-samples", None),
    "data_dir": ("--data", None),
    "val_data_dir": ("--val-data", None),
    "lr": ("--lr", None),
    "weight_decay": ("--weight-decay", None),
    "microbatch": ("--microbatch", None),
    "ema_rate": ("--ema-rate", None),
    "schedule_sampler": ("--schedule-sampler", None),
    "iterations": ("--iterations", None),
    "lr_anneal_steps": ("--iterations N --anneal-lr", None),
    "anneal_lr": ("--anneal-lr", "--no-anneal-lr"),
    "noised": ("--noised", "--no-noised"),
    "log_interval": ("--log-every", None),
    "save_interval": ("--save-every", None),
    "eval_interval": ("--eval-every", None),
    "resume_checkpoint": ("--init (fine-tune) or --run-dir (continue a run)", None),
}


def _script_flag_error(key: str, value: Any, kind: str) -> UsageError:
    option, if_false = SCRIPT_FLAGS[key]
    if if_false is not None:
        try:
            on = str2bool(value) if isinstance(value, str) else value
        except UsageError:
            on = None
        option = option if on is True else if_false if on is False else f"{option} / {if_false}"
    return UsageError(
        f"--{key} is an option of the original's scripts, not a flag of {kind}",
        f"use adm's {option} instead",
    )


def _coerce(cls: type[_Flags], values: dict[str, Any]) -> dict[str, Any]:
    fields = cls.model_fields
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in fields:
            if key in SCRIPT_FLAGS:
                raise _script_flag_error(key, value, _KIND[cls])
            hint = did_you_mean(key, fields, f"{cls.__name__} knows:", prefix="--")
            raise UsageError(f"unknown flag --{key} for {_KIND[cls]}", hint)
        if isinstance(value, str) and fields[key].annotation is bool:
            value = str2bool(value)
        out[key] = value
    return out


_KIND = {
    DiffusionFlags: "the diffusion process",
    ModelFlags: "a diffusion model",
    SuperResFlags: "an upsampler",
    ClassifierFlags: "a classifier",
}


def with_family_defaults(cls: type[_Flags], values: dict[str, Any]) -> dict[str, Any]:
    """``values`` plus the defaults of the family they come from (``FAMILY_DEFAULTS``).

    ``--training_mode`` marks a consistency_models flag set; ``--family`` names the others.
    """
    if "family" not in cls.model_fields:
        return values
    family = values.get("family") or ("consistency-models" if values.get("training_mode") else None)
    if family is None:
        return values
    if family not in FAMILY_DEFAULTS:
        raise UsageError(f"unknown --family {family!r}", f"families: {', '.join(FAMILY_DEFAULTS)}")
    defaults = {k: v for k, v in FAMILY_DEFAULTS[family].items() if k in cls.model_fields}
    return {**defaults, **values, "family": family}


def parse_flags(cls: type[F], values: dict[str, Any] | str) -> F:
    """Validate flags (a dict or a ``--flag value`` string) into ``cls``, with one-line errors."""
    if isinstance(values, str):
        values = split_flag_string(values)
    values = with_family_defaults(cls, values)
    flags = validated(cls, _coerce(cls, values), option=lambda name: f"--{name}")
    check_flags(flags)
    return flags


def parse_model_flags(values: dict[str, Any] | str) -> ModelFlags | SuperResFlags:
    """Model flags of either kind: ``--large_size`` marks an upsampler, as in the original scripts."""
    as_dict = split_flag_string(values) if isinstance(values, str) else values
    is_sr = "large_size" in as_dict or "small_size" in as_dict
    return parse_flags(SuperResFlags if is_sr else ModelFlags, as_dict)


def int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--{flag} must be a comma list of integers, got {text!r}") from None


def float_list(text: str, flag: str) -> tuple[float, ...]:
    try:
        values = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"--{flag} must be a comma list of numbers, got {text!r}") from None
    return tuple(int(v) if v.is_integer() else v for v in values)


def channel_mult(flags: ModelFlags | SuperResFlags | ClassifierFlags) -> tuple[float, ...]:
    """The channel multipliers, derived from the image size when not given (as the original)."""
    if isinstance(flags, ClassifierFlags):
        text, size, table, flag = flags.classifier_channel_mult, flags.image_size, DEFAULT_CHANNEL_MULT, "classifier_channel_mult"
    elif isinstance(flags, SuperResFlags):
        text, size, table, flag = flags.channel_mult, flags.large_size, DEFAULT_SR_CHANNEL_MULT, "channel_mult"
    else:
        text, size, table, flag = flags.channel_mult, flags.image_size, DEFAULT_CHANNEL_MULT, "channel_mult"
    if text:
        return float_list(text, flag)
    if size not in table:
        sizes = ", ".join(str(s) for s in sorted(table))
        raise UsageError(
            f"image size {size} has no default channel multipliers (known: {sizes})",
            f"pass --{flag}, e.g. 1,2,2,4",
        )
    return table[size]


def image_size(flags: ModelFlags | SuperResFlags | ClassifierFlags) -> int:
    return flags.large_size if isinstance(flags, SuperResFlags) else flags.image_size


def in_channels(flags: ModelFlags | SuperResFlags | ClassifierFlags) -> int:
    """Channels of the images a network reads (and a diffusion model makes): 3 (RGB) unless set."""
    return flags.classifier_in_channels if isinstance(flags, ClassifierFlags) else flags.in_channels


def in_channels_flag(flags: ModelFlags | SuperResFlags | ClassifierFlags) -> str:
    """The flag that sets ``in_channels`` of this flag set (its name in errors and in ``replace``)."""
    return "classifier_in_channels" if isinstance(flags, ClassifierFlags) else "in_channels"


def attention_downsample_rates(flags) -> tuple[int, ...]:
    """Attention resolutions (pixels) → downsample rates, as ``create_model`` converts them."""
    if isinstance(flags, ClassifierFlags):
        text, flag = flags.classifier_attention_resolutions, "classifier_attention_resolutions"
    else:
        text, flag = flags.attention_resolutions, "attention_resolutions"
    size = image_size(flags)
    rates = []
    for res in int_list(text, flag):
        if res > size:  # the original's image_size // res == 0 never matches a level: ignored
            continue
        if res <= 0 or size % res:
            raise UsageError(f"--{flag} {res} does not divide the image size {size}")
        rates.append(size // res)
    return tuple(rates)


def check_flags(flags: _Flags) -> None:
    """Cross-field checks that the original only fails on deep inside model construction."""
    if isinstance(flags, DiffusionFlags) and flags.diffusion_steps < 1:
        raise UsageError("--diffusion_steps must be at least 1")
    if isinstance(flags, DiffusionFlags) and not isinstance(flags, _NetworkFlags):
        return
    width = flags.classifier_width if isinstance(flags, ClassifierFlags) else flags.num_channels
    mults = channel_mult(flags)
    attention_downsample_rates(flags)
    size = image_size(flags)
    if size % (2 ** (len(mults) - 1)):
        raise UsageError(f"image size {size} is not divisible by 2^{len(mults) - 1} for {len(mults)} levels")
    for mult in mults:
        ch = int(mult * width)
        if ch <= 0 or ch % 32:
            raise UsageError(
                f"level width {ch} (= {mult} x {width}) is not a positive multiple of 32 (GroupNorm groups)",
                "choose a width and channel_mult giving multiples of 32",
            )
    if isinstance(flags, SuperResFlags) and flags.small_size > flags.large_size:
        raise UsageError(f"--small_size {flags.small_size} is larger than --large_size {flags.large_size}")
    num_classes = flags.classifier_num_classes if isinstance(flags, ClassifierFlags) else flags.num_classes
    if num_classes < 1:
        raise UsageError("the number of classes must be at least 1")
    if in_channels(flags) < 1:
        raise UsageError(f"--{in_channels_flag(flags)} must be at least 1, got {in_channels(flags)}")
    if isinstance(flags, _NetworkFlags) and flags.null_class and not flags.class_cond:
        raise UsageError("--null_class True needs a class-conditional model", "add --class_cond True, or drop --null_class")
    if isinstance(flags, DiffusionFlags) and flags.predict_v and flags.predict_xstart:
        raise UsageError("--predict_v and --predict_xstart both say what the network predicts", "give one of them")
    if isinstance(flags, ModelFlags):
        _check_training_mode(flags)


def _check_training_mode(flags: ModelFlags) -> None:
    """consistency_models flag sets have a ``--training_mode``; a guided-/improved-diffusion network
    has none, or is a consistency model distilled from such a network (``VP_CONSISTENCY_MODES``)."""
    if flags.family == "consistency-models":
        fits = bool(flags.training_mode)
    else:
        fits = flags.training_mode in ("", *VP_CONSISTENCY_MODES)
    if not fits:
        raise UsageError(f"--training_mode {flags.training_mode or '(none)'} does not fit --family {flags.family}",
                         "consistency_models flag sets have a --training_mode, the other families none "
                         "(or consistency_distillation: a student of adm distill)")
    if flags.is_karras and flags.learn_sigma:
        raise UsageError(f"--training_mode {flags.training_mode} models have no learned variance", "drop --learn_sigma")
    if flags.is_karras or flags.is_consistency:
        if not 0 < flags.sigma_min < flags.sigma_max:
            raise UsageError(f"--sigma_min {flags.sigma_min:g} and --sigma_max {flags.sigma_max:g} must satisfy 0 < min < max")
        if flags.sigma_data <= 0:
            raise UsageError("--sigma_data must be positive")
