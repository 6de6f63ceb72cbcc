"""adm's built-in training presets: the published hyper-parameters of the released models, and
small CPU presets for tests and demos.

A training preset names a network (its own flag string, or a released preset's flags) and the
``TrainConfig`` / ``ClassifierTrainConfig`` values that differ from the defaults.

Sources. Classifier 128: the guided-diffusion README's TRAIN_FLAGS (``--iterations 300000
--anneal_lr True --batch_size 256 --lr 3e-4 --save_interval 10000 --weight_decay 0.05``), the only
training command the README gives. Diffusion models: the paper's hyper-parameter tables
(Dhariwal & Nichol 2021, appendix), transcribed without access to the paper here and therefore
marked for checking in ``unverified``; everything a run needs that neither source states is
listed in ``unknown`` and left at adm's defaults (which are the original code's defaults:
AdamW betas 0.9/0.999, weight decay 0, no lr annealing, EMA 0.9999, random flip, center crop).
"""

from __future__ import annotations

from typing import Any

from adm.presets.types import TrainPreset

PAPER = "Dhariwal & Nichol 2021, appendix hyper-parameter tables"
README = "openai/guided-diffusion README (classifier training command)"
UNKNOWN_DIFFUSION = (
    "weight decay (code default 0.0)",
    "lr annealing (code default: none)",
    "micro-batch / gradient checkpointing used on the authors' hardware",
    "fp16 loss-scale schedule details beyond the code's (initial 2^20, +1e-3 per step)",
)

TINY_MODEL = (
    "--image_size 16 --num_channels 32 --channel_mult 1,2 --num_res_blocks 1 --attention_resolutions 8 "
    "--num_head_channels 32 --learn_sigma True --diffusion_steps 100 --noise_schedule cosine "
    "--resblock_updown True --use_scale_shift_norm True"
)
TINY_SR = (
    "--large_size 16 --small_size 8 --num_channels 32 --channel_mult 1,2 --num_res_blocks 1 "
    "--attention_resolutions 8 --num_head_channels 32 --learn_sigma True --diffusion_steps 100 "
    "--noise_schedule cosine --resblock_updown True --use_scale_shift_norm True"
)
TINY_CLASSIFIER = (
    "--image_size 16 --classifier_width 32 --classifier_channel_mult 1,2 --classifier_depth 1 "
    "--classifier_attention_resolutions 8 --classifier_num_head_channels 32 --classifier_num_classes 10 "
    "--classifier_pool attention"
)
TINY_TRAIN = dict(iterations=400, batch_size=16, lr=1e-3, ema_rates=(0.99,), save_every=100, log_every=10, workers=0)


def _diffusion(name: str, batch: int, lr: float, steps: int | None, fp16: bool = True, **extra: Any) -> TrainPreset:
    # precision follows the README's --use_fp16 for the model (the 512 model's is False)
    train: dict[str, Any] = {"batch_size": batch, "lr": lr, "ema_rates": (0.9999,), "precision": "fp16" if fp16 else "fp32"}
    if steps is not None:
        train["iterations"] = steps
    unverified = ("batch_size", "lr") + (("iterations",) if steps is not None else ())
    unknown = UNKNOWN_DIFFUSION + (() if steps is not None else ("training length (steps)",))
    return TrainPreset(
        name=name, kind="diffusion", released=name, train=train, source=PAPER,
        unverified=unverified, unknown=unknown, **extra,
    )


def _classifier(name: str, diffusion_flags: str = "", **extra: Any) -> TrainPreset:
    readme_recipe = dict(iterations=300_000, anneal_lr=True, batch_size=256, lr=3e-4, save_every=10_000, weight_decay=0.05)
    return TrainPreset(name=name, kind="classifier", released=name, train=readme_recipe, diffusion_flags=diffusion_flags, **extra)


# The offline demo (`adm sample --preset digits`): scikit-learn's digits at 16x16 (adm data digits).
DIGITS_MODEL = (
    "--image_size 16 --num_channels 32 --channel_mult 1,2,2 --num_res_blocks 2 --attention_resolutions 8,4 "
    "--num_head_channels 32 --learn_sigma True --class_cond True --num_classes 10 --diffusion_steps 1000 "
    "--noise_schedule cosine --resblock_updown True --use_scale_shift_norm True --dropout 0.1"
)
DIGITS_CLASSIFIER = (
    "--image_size 16 --classifier_width 32 --classifier_channel_mult 1,2,2 --classifier_depth 2 "
    "--classifier_attention_resolutions 8,4 --classifier_num_head_channels 32 --classifier_num_classes 10 "
    "--classifier_pool attention"
)
DIGITS_TRAIN = dict(batch_size=64, random_flip=False, workers=0, save_every=1000, log_every=50, keep=1)
# Classifier-free guidance and autoguidance on digits (docs/guidance.md): `digits-cfg` is the digits
# model fine-tuned with label dropout (it gains the null class), `digits-guide` a small model of the
# same conditioning whose early snapshot is digits-cfg's autoguidance guide.
DIGITS_CFG_MODEL = DIGITS_MODEL + " --null_class True"
DIGITS_GUIDE_MODEL = (
    "--image_size 16 --num_channels 32 --channel_mult 1,2 --num_res_blocks 1 --attention_resolutions 8 "
    "--num_head_channels 32 --learn_sigma True --class_cond True --num_classes 10 --null_class True "
    "--diffusion_steps 1000 --noise_schedule cosine --resblock_updown True --use_scale_shift_norm True --dropout 0.1"
)
DIGITS_LABEL_DROPOUT = 0.15
DIGITS_GUIDE_CHECKPOINT = (1000, "model")  # (step, ema | model): the digits-guide checkpoint shipped (measured)
DIGITS_GUIDE_SNAPSHOTS = (250, 500, 1000)


def builtin_training_presets() -> list[TrainPreset]:
    return [
        _diffusion("imagenet64", 2048, 3e-4, 540_000, description="ImageNet 64x64 ADM (class-conditional)"),
        _diffusion("imagenet128", 256, 1e-4, 4_360_000, description="ImageNet 128x128 ADM (class-conditional)"),
        _diffusion("imagenet256", 256, 1e-4, 1_980_000, description="ImageNet 256x256 ADM (class-conditional)"),
        _diffusion("imagenet256-uncond", 256, 1e-4, None, description="ImageNet 256x256 ADM (unconditional)"),
        _diffusion("imagenet512", 256, 1e-4, 1_940_000, fp16=False, description="ImageNet 512x512 ADM (class-conditional)"),
        _diffusion("upsample-64-256", 256, 1e-4, 500_000, description="ImageNet 64->256 upsampler (ADM-U)"),
        _diffusion("upsample-128-512", 256, 1e-4, 1_050_000, description="ImageNet 128->512 upsampler (ADM-U)"),
        _diffusion("lsun-bedroom", 256, 1e-4, None, description="LSUN bedroom 256x256 ADM"),
        _diffusion("lsun-cat", 256, 1e-4, None, description="LSUN cat 256x256 ADM"),
        _diffusion("lsun-horse", 256, 1e-4, None, description="LSUN horse 256x256 ADM"),
        _diffusion("lsun-horse-nodropout", 256, 1e-4, None, description="LSUN horse 256x256 ADM without dropout"),
        _classifier(
            "imagenet128", description="ImageNet 128x128 noisy classifier", source=README,
            unknown=("EMA (the code keeps none)", "fp16 (README flags leave classifier_use_fp16 False)"),
        ),
        *(
            _classifier(
                name, flags, description=f"ImageNet {size}x{size} noisy classifier (the README's 128 recipe)",
                source=README + " for 128x128, applied unchanged",
                unknown=(f"every training value for the {size}x{size} classifier: the README gives only the 128 recipe",),
            )
            for name, size, flags in (
                ("imagenet64", 64, "--noise_schedule cosine"),
                ("imagenet256", 256, ""),
                ("imagenet512", 512, ""),
            )
        ),
        TrainPreset(
            name="tiny", kind="diffusion", flags=TINY_MODEL, train=TINY_TRAIN,
            description="16x16 unconditional model for CPU tests and demos (~0.8M parameters)",
        ),
        TrainPreset(
            name="tiny-cond", kind="diffusion", flags=TINY_MODEL + " --class_cond True --num_classes 10", train=TINY_TRAIN,
            description="16x16 class-conditional model (up to 10 classes) for CPU tests and demos",
        ),
        TrainPreset(
            name="tiny-sr", kind="diffusion", flags=TINY_SR, train=TINY_TRAIN,
            description="8->16 upsampler for CPU tests and demos",
        ),
        TrainPreset(
            name="tiny", kind="classifier", flags=TINY_CLASSIFIER, diffusion_flags="--diffusion_steps 100 --noise_schedule cosine",
            train={**TINY_TRAIN, "lr": 1e-3, "ema_rates": ()},
            description="16x16 noisy classifier (up to 10 classes) for CPU tests and demos",
        ),
        TrainPreset(
            name="digits", kind="diffusion", flags=DIGITS_MODEL,
            train={**DIGITS_TRAIN, "iterations": 8000, "lr": 5e-4, "ema_rates": (0.999,)},
            description="the `digits` demo model: 16x16 class-conditional ADM on scikit-learn's digits (~2M parameters)",
        ),
        TrainPreset(
            name="digits", kind="classifier", flags=DIGITS_CLASSIFIER,
            diffusion_flags="--diffusion_steps 1000 --noise_schedule cosine",
            train={**DIGITS_TRAIN, "iterations": 3000, "lr": 1e-3, "ema_rates": (), "weight_decay": 0.05,
                   "random_crop": False, "val_fraction": 0.1},
            description="the `digits` demo's noisy classifier",
        ),
        TrainPreset(
            name="digits-cfg", kind="diffusion", flags=DIGITS_CFG_MODEL,
            train={**DIGITS_TRAIN, "iterations": 2000, "lr": 2e-4, "ema_rates": (0.999,), "save_every": 500,
                   "label_dropout": DIGITS_LABEL_DROPOUT, "snapshots": (250,)},
            description="the `digits-cfg` demo model: the digits model (give its weights with --init) fine-tuned "
                        "with label dropout for classifier-free guidance",
        ),
        TrainPreset(
            name="digits-guide", kind="diffusion", flags=DIGITS_GUIDE_MODEL,
            train={**DIGITS_TRAIN, "iterations": 1500, "lr": 5e-4, "ema_rates": (0.999,), "save_every": 500,
                   "label_dropout": DIGITS_LABEL_DROPOUT, "snapshots": DIGITS_GUIDE_SNAPSHOTS},
            description="the `digits-guide` demo model: a small digits model whose early snapshot guides "
                        "digits-cfg (autoguidance)",
        ),
    ]
