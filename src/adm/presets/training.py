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

Networks for one's own data (docs/presets.md, "Training on your own data"): the architectures
other papers reused when they trained on their own datasets, each a released preset's network
(changed only where said) with the training values its users published, and a description that
says where it was used.
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


# (batch size, lr, steps or None when not published) of the released models, from PAPER: the one
# place these numbers are written (the ImageNet networks for one's own data reuse them).
PAPER_VALUES: dict[str, tuple[int, float, int | None]] = {
    "imagenet64": (2048, 3e-4, 540_000),
    "imagenet128": (256, 1e-4, 4_360_000),
    "imagenet256": (256, 1e-4, 1_980_000),
    "imagenet256-uncond": (256, 1e-4, None),
    "imagenet512": (256, 1e-4, 1_940_000),
    "upsample-64-256": (256, 1e-4, 500_000),
    "upsample-128-512": (256, 1e-4, 1_050_000),
    **{name: (256, 1e-4, None) for name in ("lsun-bedroom", "lsun-cat", "lsun-horse", "lsun-horse-nodropout")},
}


def _diffusion(name: str, fp16: bool = True, **extra: Any) -> TrainPreset:
    # precision follows the README's --use_fp16 for the model (the 512 model's is False)
    batch, lr, steps = PAPER_VALUES[name]
    train: dict[str, Any] = {"batch_size": batch, "lr": lr, "ema_rates": (0.9999,), "precision": "fp16" if fp16 else "fp32"}
    if steps is not None:
        train["iterations"] = steps
    unverified = ("batch_size", "lr") + (("iterations",) if steps is not None else ())
    unknown = UNKNOWN_DIFFUSION + (() if steps is not None else ("training length (steps)",))
    return TrainPreset(
        name=name, kind="diffusion", released=name, train=train, source=PAPER,
        unverified=unverified, unknown=unknown, **extra,
    )


# ----------------------------------------------------------------- networks for one's own data

ILVR = "ILVR (Choi et al., ICCV 2021, arXiv:2108.02938): jychoi118/ilvr_adm README.md (sampling flags, FFHQ and AFHQ-dog models)"
P2 = ("P2-weighting (Choi et al., CVPR 2022, arXiv:2204.00227): jychoi118/P2-weighting README.md, 'Training your models' "
      "(--lr 2e-5 --batch_size 8 --rescale_learned_sigmas True --use_fp16 False with the network's flags)")
DPS = "DPS (Chung et al., ICLR 2023, arXiv:2209.14687): DPS2022/diffusion-posterior-sampling configs/model_config.yaml (ILVR's FFHQ model, the same flags)"
IDDPM_CIFAR = ("Improved DDPM (Nichol & Dhariwal, ICML 2021, arXiv:2102.09672): openai/improved-diffusion README.md, "
               "'Models and Hyperparameters', unconditional CIFAR-10 (MODEL_FLAGS, DIFFUSION_FLAGS, TRAIN_FLAGS --lr 1e-4 "
               "--batch_size 128); 500K steps: the checkpoint's name, cifar10_uncond_50M_500K.pt")
ADM = "ADM (Dhariwal & Nichol, NeurIPS 2021, arXiv:2105.05233): openai/guided-diffusion README.md MODEL_FLAGS; "
# Class-conditional is off: a folder of one's own images has no labels unless arranged so, and
# guessing labels from file names would be wrong for most (docs/presets.md).
LABELS = 'unconditional (labelled data: --model-flags "--class_cond True")'


def _own_data(name: str, released: str, description: str, source: str, changes: str = "", **extra: Any) -> TrainPreset:
    return TrainPreset(name=name, kind="diffusion", released=released, changes=changes, description=description,
                       source=source, **extra)


def _adm(size: int, released: str) -> TrainPreset:
    """guided-diffusion's ImageNet network at ``size``, unconditional, with the paper's batch and lr
    (the ImageNet run's length is no guide for other data, so adm's default is kept)."""
    batch, lr, _ = PAPER_VALUES[released]
    return _own_data(
        f"adm-{size}", released, changes="" if released.endswith("-uncond") else "--class_cond False",
        description=f"guided-diffusion's ImageNet {size}x{size} network (ADM), {LABELS}",
        source=f"{ADM}{released} (class_cond off); batch size and lr: {PAPER}",
        train={"batch_size": batch, "lr": lr, "ema_rates": (0.9999,), "precision": "fp16"},
        unverified=("batch_size", "lr"),
        unknown=(*UNKNOWN_DIFFUSION, "training length: the ImageNet run's is no guide for other data"),
    )


def own_data_presets() -> list[TrainPreset]:
    """The networks people reuse for their own data, smallest first."""
    return [
        _own_data(
            "iddpm-cifar10", "iddpm-cifar10",
            description="improved-diffusion's CIFAR-10 network (Nichol & Dhariwal 2021): 32x32, unconditional, "
                        "4000 cosine steps, dropout 0.3",
            source=IDDPM_CIFAR,
            # improved-diffusion's loader has no flip (improved_diffusion/image_datasets.py)
            train={"batch_size": 128, "lr": 1e-4, "iterations": 500_000, "ema_rates": (0.9999,), "random_flip": False},
            unknown=("weight decay (code default 0.0)", "lr annealing (code default: none)"),
        ),
        _own_data(
            "lightweight-256", "ilvr-ffhq256", changes="--rescale_learned_sigmas True",
            description="the 93M 'lightweight ADM', 256x256, of ILVR (FFHQ, AFHQ-dog) and P2-weighting (FFHQ, "
                        "CelebA-HQ, CUB, AFHQ-dog, Flowers, MetFaces), reused by DPS; P2's training values",
            source=f"{ILVR}; {P2}; {DPS}",
            train={"batch_size": 8, "lr": 2e-5, "ema_rates": (0.9999,), "precision": "fp32"},
            unknown=(
                "training length: P2's README samples ema_0.9999_2000000.pt (2M steps at batch 8); ILVR's FFHQ "
                "model saw 10M images, its AFHQ-dog model 4M",
                "P2 weighting (--p2_gamma 1 --p2_k 1): not implemented in adm, so this trains P2's baseline "
                "weighting (--p2_gamma 0, its code's default)",
                "random flip: P2's image_train.py calls load_data without random_flip (its image_datasets.py not read)",
            ),
        ),
        _adm(64, "imagenet64"),
        _adm(128, "imagenet128"),
        _adm(256, "imagenet256-uncond"),
    ]


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
        _diffusion("imagenet64", description="ImageNet 64x64 ADM (class-conditional)"),
        _diffusion("imagenet128", description="ImageNet 128x128 ADM (class-conditional)"),
        _diffusion("imagenet256", description="ImageNet 256x256 ADM (class-conditional)"),
        _diffusion("imagenet256-uncond", description="ImageNet 256x256 ADM (unconditional)"),
        _diffusion("imagenet512", fp16=False, description="ImageNet 512x512 ADM (class-conditional)"),
        _diffusion("upsample-64-256", description="ImageNet 64->256 upsampler (ADM-U)"),
        _diffusion("upsample-128-512", description="ImageNet 128->512 upsampler (ADM-U)"),
        _diffusion("lsun-bedroom", description="LSUN bedroom 256x256 ADM"),
        _diffusion("lsun-cat", description="LSUN cat 256x256 ADM"),
        _diffusion("lsun-horse", description="LSUN horse 256x256 ADM"),
        _diffusion("lsun-horse-nodropout", description="LSUN horse 256x256 ADM without dropout"),
        *own_data_presets(),
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
