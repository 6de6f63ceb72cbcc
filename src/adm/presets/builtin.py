"""adm's built-in presets: OpenAI's released guided-diffusion checkpoints, the demo, and (from
``adm.presets.families``) the rest of the ADM family: improved-diffusion, consistency_models and
widely reused third-party U-Nets.

Flags are the README's MODEL_FLAGS (openai/guided-diffusion, commit 22e0df8), pasted as strings so
they can be compared with the README by eye. Default guidance scales are the README's sample
commands; the ``results`` are the README's FID / precision / recall. No sizes or checksums were
ever published, so artifacts carry none: the download layer records a hash on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adm.presets.families import adm_classifier, family_presets
from adm.presets.training import builtin_training_presets
from adm.presets.types import Artifact, Preset, SamplingDefaults

if TYPE_CHECKING:  # the registry imports this module's register(): no import back at run time
    from adm.presets.registry import Registry

BASE_URL = "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/"
DIGITS_SCALE = 1.0
COMMON = "--diffusion_steps 1000 --learn_sigma True --resblock_updown True --use_scale_shift_norm True"
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
    "weights-inception-2015-12-05-6726825d.pth"
)

# artifact name -> (file name, description)
CHECKPOINTS = {
    "64-cond": ("64x64_diffusion.pt", "ImageNet 64x64 class-conditional diffusion model"),
    "64-classifier": ("64x64_classifier.pt", "ImageNet 64x64 noisy classifier"),
    "128-cond": ("128x128_diffusion.pt", "ImageNet 128x128 class-conditional diffusion model"),
    "128-classifier": ("128x128_classifier.pt", "ImageNet 128x128 noisy classifier"),
    "256-cond": ("256x256_diffusion.pt", "ImageNet 256x256 class-conditional diffusion model"),
    "256-uncond": ("256x256_diffusion_uncond.pt", "ImageNet 256x256 unconditional diffusion model"),
    "256-classifier": ("256x256_classifier.pt", "ImageNet 256x256 noisy classifier"),
    "512-cond": ("512x512_diffusion.pt", "ImageNet 512x512 class-conditional diffusion model"),
    "512-classifier": ("512x512_classifier.pt", "ImageNet 512x512 noisy classifier"),
    "64-256-upsampler": ("64_256_upsampler.pt", "ImageNet 64->256 upsampler"),
    "128-512-upsampler": ("128_512_upsampler.pt", "ImageNet 128->512 upsampler"),
    "lsun-bedroom": ("lsun_bedroom.pt", "LSUN bedroom 256x256 unconditional model"),
    "lsun-cat": ("lsun_cat.pt", "LSUN cat 256x256 unconditional model"),
    "lsun-horse": ("lsun_horse.pt", "LSUN horse 256x256 unconditional model"),
    "lsun-horse-nodropout": ("lsun_horse_nodropout.pt", "LSUN horse 256x256, trained without dropout"),
}

# artifact name -> path below BASE_URL (the evaluator's reference batches)
REFERENCE_BATCHES = {
    "ref-imagenet64": "ref_batches/imagenet/64/VIRTUAL_imagenet64_labeled.npz",
    "ref-imagenet128": "ref_batches/imagenet/128/VIRTUAL_imagenet128_labeled.npz",
    "ref-imagenet256": "ref_batches/imagenet/256/VIRTUAL_imagenet256_labeled.npz",
    "ref-imagenet512": "ref_batches/imagenet/512/VIRTUAL_imagenet512.npz",
    "ref-lsun-bedroom": "ref_batches/lsun/bedroom/VIRTUAL_lsun_bedroom256.npz",
    "ref-lsun-cat": "ref_batches/lsun/cat/VIRTUAL_lsun_cat256.npz",
    "ref-lsun-horse": "ref_batches/lsun/horse/VIRTUAL_lsun_horse256.npz",
}


def _lsun(dropout: str) -> str:
    return (
        f"{COMMON} --attention_resolutions 32,16,8 --class_cond False --dropout {dropout} --image_size 256 "
        "--noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --use_fp16 True"
    )


def _presets() -> list[Preset]:
    readme = SamplingDefaults(sampler="ddpm", steps="250", batch_size=4)
    p256 = (
        f"{COMMON} --attention_resolutions 32,16,8 --image_size 256 --noise_schedule linear "
        "--num_channels 256 --num_head_channels 64 --num_res_blocks 2 --use_fp16 True"
    )
    return [
        Preset(
            name="imagenet64",
            description="ImageNet 64x64, class-conditional, classifier-guided (ADM-G)",
            model_flags=f"{COMMON} --attention_resolutions 32,16,8 --class_cond True --dropout 0.1 --image_size 64 "
            "--noise_schedule cosine --num_channels 192 --num_head_channels 64 --num_res_blocks 3 "
            "--use_new_attention_order True --use_fp16 True",
            classifier_flags=adm_classifier(64, depth=4),
            checkpoint="64-cond",
            classifier_checkpoint="64-classifier",
            classifier_scale=1.0,
            sampling=readme,
            results={"fid": 2.07, "precision": 0.74, "recall": 0.63},
        ),
        Preset(
            name="imagenet128",
            description="ImageNet 128x128, class-conditional, classifier-guided (ADM-G)",
            model_flags=f"{COMMON} --attention_resolutions 32,16,8 --class_cond True --image_size 128 "
            "--noise_schedule linear --num_channels 256 --num_heads 4 --num_res_blocks 2 --use_fp16 True",
            classifier_flags=adm_classifier(128),
            checkpoint="128-cond",
            classifier_checkpoint="128-classifier",
            classifier_scale=0.5,
            sampling=readme,
            results={"fid": 2.97, "precision": 0.78, "recall": 0.59},
        ),
        Preset(
            name="imagenet256",
            description="ImageNet 256x256, class-conditional, classifier-guided (ADM-G)",
            model_flags=f"{p256} --class_cond True",
            classifier_flags=adm_classifier(256),
            checkpoint="256-cond",
            classifier_checkpoint="256-classifier",
            classifier_scale=1.0,
            sampling=readme,
            results={"fid": 4.59, "precision": 0.82, "recall": 0.52},
        ),
        Preset(
            name="imagenet256-uncond",
            description="ImageNet 256x256, unconditional model guided by the classifier at scale 10",
            model_flags=f"{p256} --class_cond False",
            classifier_flags=adm_classifier(256),
            checkpoint="256-uncond",
            classifier_checkpoint="256-classifier",
            classifier_scale=10.0,
            sampling=readme,
        ),
        Preset(
            name="imagenet512",
            description="ImageNet 512x512, class-conditional, classifier-guided (ADM-G)",
            model_flags=f"{COMMON} --attention_resolutions 32,16,8 --class_cond True --image_size 512 "
            "--noise_schedule linear --num_channels 256 --num_head_channels 64 --num_res_blocks 2 --use_fp16 False",
            classifier_flags=adm_classifier(512),
            checkpoint="512-cond",
            classifier_checkpoint="512-classifier",
            classifier_scale=4.0,
            sampling=readme,
            results={"fid": 7.72, "precision": 0.87, "recall": 0.42},
        ),
        Preset(
            name="upsample-64-256",
            description="ImageNet 64->256 upsampler (ADM-U), class-conditional",
            model_flags=f"{COMMON} --attention_resolutions 32,16,8 --class_cond True --large_size 256 --small_size 64 "
            "--noise_schedule linear --num_channels 192 --num_heads 4 --num_res_blocks 2 --use_fp16 True",
            checkpoint="64-256-upsampler",
            base_preset="imagenet64",
            sampling=readme,
            results={"fid": 3.94, "precision": 0.83, "recall": 0.53},
        ),
        Preset(
            name="upsample-128-512",
            description="ImageNet 128->512 upsampler (ADM-U), class-conditional",
            model_flags=f"{COMMON} --attention_resolutions 32,16 --class_cond True --large_size 512 --small_size 128 "
            "--noise_schedule linear --num_channels 192 --num_head_channels 64 --num_res_blocks 2 --use_fp16 True",
            checkpoint="128-512-upsampler",
            base_preset="imagenet128",
            sampling=readme,
            results={"fid": 3.85, "precision": 0.84, "recall": 0.53},
        ),
        Preset(
            name="lsun-bedroom",
            description="LSUN bedroom 256x256, unconditional (README: best with 1000 steps)",
            model_flags=_lsun("0.1"),
            checkpoint="lsun-bedroom",
            sampling=SamplingDefaults(sampler="ddpm", steps="1000", batch_size=4),
            results={"fid": 1.90, "precision": 0.66, "recall": 0.51},
        ),
        Preset(
            name="lsun-cat",
            description="LSUN cat 256x256, unconditional",
            model_flags=_lsun("0.1"),
            checkpoint="lsun-cat",
            sampling=SamplingDefaults(sampler="ddpm", steps="1000", batch_size=4),
            results={"fid": 5.57, "precision": 0.63, "recall": 0.52},
        ),
        Preset(
            name="lsun-horse",
            description="LSUN horse 256x256, unconditional",
            model_flags=_lsun("0.1"),
            checkpoint="lsun-horse",
            sampling=SamplingDefaults(sampler="ddpm", steps="1000", batch_size=4),
            results={"fid": 2.57, "precision": 0.71, "recall": 0.55},
        ),
        Preset(
            name="lsun-horse-nodropout",
            description="LSUN horse 256x256, unconditional, trained without dropout",
            model_flags=_lsun("0.0"),
            checkpoint="lsun-horse-nodropout",
            sampling=SamplingDefaults(sampler="ddpm", steps="1000", batch_size=4),
        ),
    ]


# The offline demo, made by `adm recipe digits` (docs/digits.md) and shipped inside the wheel.
DIGITS_ASSETS = {
    "digits-model": ("digits_model.safetensors", "69abd959a54c9d2b57b86ae523b91d633bb3e004ae93fa28891a05b4436f5a36", "checkpoint"),
    "digits-classifier": ("digits_classifier.safetensors", "8ef908555614eb7f89d5e9754acf3055cf883ef4333dbaeea2d2d8e3c67a0184", "checkpoint"),
    "digits-judge": ("digits_judge.safetensors", "75ec66ed1335c51778cf041ad03cf019a484aa5a7ca8c43c47d5c4539e9a3171", "weights"),
    # made by `adm recipe digits-cfg` (docs/guidance.md)
    "digits-cfg-model": ("digits_cfg_model.safetensors", "597da2807ea75f5b44a4e771affaffbf5da52fe651a2ca7bdd5c0ec989fdb233", "checkpoint"),
    "digits-guide-model": ("digits_guide_model.safetensors", "1999c167bce655e60a8b8f56baffc8884269309daf2e6cb6fe82aa0172fe4ab6", "checkpoint"),
    # made by `adm recipe digits-cm` (docs/distill.md)
    "digits-cm-model": ("digits_cm_model.safetensors", "dc4935e1046ce4811bfce80a664ade61c0a081857b81dc1ac56bcd505b00fe24", "checkpoint"),
}
# 25 evaluations of the stochastic DPM-Solver++(2M): the fewest at which it is within 5% of
# DDPM-250's digits-FD guided and unguided, per seed and on average over seeds, at a tenth of the
# cost (docs/sampling.md, "Quality against evaluations"). The guidance models sample the same way.
DIGITS_SAMPLING = SamplingDefaults(sampler="dpm++2m-sde", steps="25", batch_size=50, num_samples=50, classes="balanced")
# digits-cfg samples unguided by default: at its sampler no scale of classifier-free guidance or
# autoguidance measured a lower held-out digits-FD than none (docs/guidance.md has the recipes that guide)
DIGITS_CFG_SCALE = 0.0
DIGITS_AUTOGUIDANCE = 0.0


def _digits() -> Preset:
    from adm.presets.training import DIGITS_CLASSIFIER, DIGITS_MODEL

    return Preset(
        name="digits",
        family="demo",
        description="offline demo: 16x16 handwritten digits (scikit-learn), guided; ships with adm",
        model_flags=DIGITS_MODEL,
        classifier_flags=DIGITS_CLASSIFIER,
        checkpoint="digits-model",
        classifier_checkpoint="digits-classifier",
        classifier_scale=DIGITS_SCALE,
        sampling=DIGITS_SAMPLING,
    )


def _digits_guidance() -> list[Preset]:
    """The digits model fine-tuned with label dropout, and the weak model that autoguides it."""
    from adm.presets.training import DIGITS_CFG_MODEL, DIGITS_CLASSIFIER, DIGITS_GUIDE_MODEL

    return [
        Preset(
            name="digits-cfg",
            family="demo",
            description="offline demo: the digits model fine-tuned with label dropout, for classifier-free guidance "
                        "and autoguidance (guide: digits-guide); ships with adm",
            model_flags=DIGITS_CFG_MODEL,
            classifier_flags=DIGITS_CLASSIFIER,  # --scale S guides it with the digits classifier too
            checkpoint="digits-cfg-model",
            classifier_checkpoint="digits-classifier",
            cfg_scale=DIGITS_CFG_SCALE,
            autoguidance=DIGITS_AUTOGUIDANCE,
            guide_model="digits-guide",
            sampling=DIGITS_SAMPLING,
        ),
        Preset(
            name="digits-guide",
            family="demo",
            description="offline demo: a small, early digits model, the autoguidance guide of digits-cfg; ships with adm",
            model_flags=DIGITS_GUIDE_MODEL,
            checkpoint="digits-guide-model",
            sampling=DIGITS_SAMPLING,
        ),
    ]


# The guided digits sampler distilled (`adm distill --teacher digits`, adm.recipes.digits_cm.DISTILL):
# the teacher's network read as a consistency model over its own VP reading, from σ 10 down to the
# cosine schedule's lowest σ (adm.training.distill.student_flags decides both; a test checks them).
DIGITS_CM_FLAGS = " --family guided-diffusion --training_mode consistency_distillation --sigma_min 0.006425412771142062 --sigma_max 10"
DIGITS_CM_STEPS = "0,2"  # two evaluations, re-noised to the grid's level 2 (σ 5.7): the best measured (docs/distill.md)
DIGITS_CM_SCALES = 18  # the grid it was distilled on (cm's karras_steps)


def _digits_cm() -> Preset:
    from adm.presets.training import DIGITS_MODEL

    return Preset(
        name="digits-cm",
        family="demo",
        description="offline demo: the guided digits sampler distilled into a consistency model (adm distill): "
                    "1-2 network evaluations per image, no classifier; ships with adm",
        model_flags=DIGITS_MODEL + DIGITS_CM_FLAGS,
        checkpoint="digits-cm-model",
        sampling=SamplingDefaults(sampler="cm", steps=DIGITS_CM_STEPS, options={"karras_steps": DIGITS_CM_SCALES},
                                  batch_size=50, num_samples=50, classes="balanced"),
    )


def _artifacts(family_checkpoints: list[Artifact]) -> list[Artifact]:
    """Every artifact, checkpoints first, family by family (`adm download --list` keeps the order)."""
    artifacts = [
        Artifact(name=name, url=BASE_URL + filename, filename=filename, kind="checkpoint", description=text)
        for name, (filename, text) in CHECKPOINTS.items()
    ]
    artifacts += family_checkpoints
    artifacts += [
        Artifact(name=name, url=f"package:adm.assets/{filename}", filename=filename, sha256=sha, kind=kind,
                 description="ships inside the adm wheel (the digits demo)")
        for name, (filename, sha, kind) in DIGITS_ASSETS.items()
    ]
    artifacts += [
        Artifact(
            name=name,
            url=BASE_URL + path,
            filename=path.rsplit("/", 1)[-1],
            mirror_path=path,
            kind="reference",
            description="reference batch of the ADM evaluator",
        )
        for name, path in REFERENCE_BATCHES.items()
    ]
    artifacts.append(
        Artifact(
            name="inception",
            url=INCEPTION_URL,
            filename=INCEPTION_URL.rsplit("/", 1)[-1],
            kind="weights",
            sha256="6726825d",  # the hash prefix its torch.hub file name carries
            description="Inception-v3 (TF 2015-12-05 graph, torch-fidelity port) for adm evaluate",
        )
    )
    return artifacts


def register(registry: Registry) -> None:
    """Entry point ``adm.presets:builtin``."""
    families = family_presets()
    for artifact in _artifacts([artifact for _, artifact in families]):
        registry.add_artifact(artifact)
    for preset in [*_presets(), *(preset for preset, _ in families), _digits(), *_digits_guidance(), _digits_cm()]:
        registry.add_preset(preset)
    for training in builtin_training_presets():
        registry.add_training_preset(training)
