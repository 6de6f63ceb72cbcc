"""Presets for the rest of the ADM family: improved-diffusion, consistency_models, third parties.

Every network here is the guided-diffusion U-Net (key for key), so each is only a flag set, an
artifact and the sampling its authors published:

* ``openai/improved-diffusion`` (commit 1bc7bbb): the README's MODEL_FLAGS and DIFFUSION_FLAGS,
  pasted, after ``--family improved-diffusion`` (its own defaults: ``rescale_timesteps`` True).
* ``openai/consistency_models`` (commit e32b69e): the flags of ``scripts/launch.sh``; sampling as
  its sampling commands: EDM teachers with Heun (``--steps 40``, 79 evaluations), consistency
  models with the ``--ts`` index lists into a Karras grid of ``--steps`` levels. FIDs are Table 2
  of Song et al. 2023 (50k samples, LPIPS-distilled CD).
* Third-party checkpoints reused by many papers, with the flags their repositories publish (each
  preset's ``source`` names the files). Most live on Google Drive, which serves no direct download:
  their artifacts are ``import_only``, fetched by hand and imported with ``--from-file``.

No sizes were published and only Disco Diffusion published a checksum: the download layer
records a hash on first use, and the content check (keys and shapes) catches a wrong file.
"""

from __future__ import annotations

from adm.presets.types import Artifact, Preset, SamplingDefaults

IDDPM_URL = "https://openaipublic.blob.core.windows.net/diffusion/march-2021/"
CM_URL = "https://openaipublic.blob.core.windows.net/consistency/"
IDDPM_SOURCE = "openai/improved-diffusion README.md (Models and Hyperparameters)"
# The README publishes no metrics; these are Nichol & Dhariwal 2021 as paperswithcode lists them.
IDDPM_RESULTS = f"{IDDPM_SOURCE}; results: Nichol & Dhariwal 2021 via paperswithcode (not checked against the PDF)"
CM_SOURCE = "openai/consistency_models README.md, scripts/launch.sh; FIDs: Song et al. 2023, Table 2"
EDM_TEACHER = "Heun on 40 Karras levels (79 evaluations), as scripts/launch.sh samples it"

# --------------------------------------------------------------------------- improved-diffusion

IDDPM = "--family improved-diffusion"
IDDPM_64 = f"{IDDPM} --image_size 64 --num_channels 128 --num_res_blocks 3 --learn_sigma True"
IDDPM_CIFAR = f"{IDDPM} --image_size 32 --num_channels 128 --num_res_blocks 3 --learn_sigma True --dropout 0.3"
IDDPM_LSUN = (
    f"{IDDPM} --image_size 256 --num_channels 128 --num_res_blocks 2 --num_heads 1 --learn_sigma True "
    "--use_scale_shift_norm False --attention_resolutions 16 "
    "--diffusion_steps 1000 --noise_schedule linear --rescale_learned_sigmas False --rescale_timesteps False"
)
COSINE_4000 = "--diffusion_steps 4000 --noise_schedule cosine"
# The README samples with the full chain unless given --timestep_respacing; 250 is its example.
IDDPM_SAMPLING = SamplingDefaults(sampler="ddpm", steps="250", batch_size=4)


def _improved() -> list[tuple[Preset, Artifact]]:
    """The eight improved-diffusion releases."""
    return [
        _openai(IDDPM_URL, "cifar10_uncond_50M_500K.pt", "iddpm-cifar10", name="iddpm-cifar10",
                description="CIFAR-10 32x32, unconditional, L_hybrid, cosine schedule",
                model_flags=f"{IDDPM_CIFAR} {COSINE_4000}"),
        _openai(IDDPM_URL, "cifar10_uncond_vlb_50M_500K.pt", "iddpm-cifar10-vlb", name="iddpm-cifar10-vlb",
                description="CIFAR-10 32x32, unconditional, L_vlb, cosine schedule",
                model_flags=f"{IDDPM_CIFAR} {COSINE_4000} --use_kl True", results={"nll_bits_per_dim": 2.94},
                source=IDDPM_RESULTS),
        _openai(IDDPM_URL, "imagenet64_uncond_100M_1500K.pt", "iddpm-64", name="iddpm-imagenet64",
                description="ImageNet 64x64, unconditional, L_hybrid, cosine schedule",
                model_flags=f"{IDDPM_64} {COSINE_4000}"),
        _openai(IDDPM_URL, "imagenet64_uncond_vlb_100M_1500K.pt", "iddpm-64-vlb", name="iddpm-imagenet64-vlb",
                description="ImageNet 64x64, unconditional, L_vlb, cosine schedule",
                model_flags=f"{IDDPM_64} {COSINE_4000} --use_kl True", results={"nll_bits_per_dim": 3.53},
                source=IDDPM_RESULTS),
        _openai(IDDPM_URL, "imagenet64_cond_270M_250K.pt", "iddpm-64-cond", name="iddpm-imagenet64-cond",
                description="ImageNet 64x64, class-conditional (270M parameters)",
                model_flags=f"{IDDPM} --image_size 64 --num_channels 192 --num_res_blocks 3 --learn_sigma True "
                f"--class_cond True {COSINE_4000} --rescale_learned_sigmas False --rescale_timesteps False",
                results={"fid": 2.92}, source=IDDPM_RESULTS),
        # --large_size / --small_size are sr_model_and_diffusion_defaults' values, given so that the
        # flags say "upsampler" (the README's command runs super_res_sample.py instead).
        _openai(IDDPM_URL, "upsample_cond_500K.pt", "iddpm-upsampler", name="iddpm-upsampler-64-256",
                description="ImageNet 64->256 upsampler, class-conditional", base_preset="iddpm-imagenet64-cond",
                model_flags=f"{IDDPM} --large_size 256 --small_size 64 --num_channels 192 --num_res_blocks 2 "
                "--learn_sigma True --class_cond True --diffusion_steps 4000 --noise_schedule linear "
                "--rescale_learned_sigmas False --rescale_timesteps False"),
        _openai(IDDPM_URL, "lsun_uncond_100M_1200K_bs128.pt", "iddpm-bedroom", name="iddpm-bedroom256",
                description="LSUN bedroom 256x256, unconditional (lr 1e-4, 1200K steps)", model_flags=IDDPM_LSUN),
        _openai(IDDPM_URL, "lsun_uncond_100M_2400K_bs64.pt", "iddpm-bedroom-2400k", name="iddpm-bedroom256-2400k",
                description="LSUN bedroom 256x256, unconditional (lr 2e-5, 2400K steps)", model_flags=IDDPM_LSUN),
    ]


def _openai(base_url: str, filename: str, artifact: str, **preset) -> tuple[Preset, Artifact]:
    """A preset of an OpenAI release and the artifact of its checkpoint.

    Artifact names are short (as guided-diffusion's ``64-cond``): `adm download --list` shows
    each with its file name on one line of 80 columns.
    """
    preset.setdefault("sampling", IDDPM_SAMPLING)
    preset.setdefault("source", IDDPM_SOURCE)
    made = Preset(checkpoint=artifact, **preset)
    return made, Artifact(name=artifact, url=base_url + filename, filename=filename, kind="checkpoint",
                          description=f"{made.description.split(';')[0]} ({made.family})")


def adm_classifier(size: int, depth: int = 2) -> str:
    """guided-diffusion's released noisy classifiers (README CLASSIFIER_FLAGS)."""
    return (
        f"--image_size {size} --classifier_attention_resolutions 32,16,8 --classifier_depth {depth} "
        "--classifier_width 128 --classifier_pool attention --classifier_resblock_updown True "
        "--classifier_use_scale_shift_norm True"
    )


# --------------------------------------------------------------------------- consistency_models

CM_DATA = {  # dataset -> (flags of its network, description)
    "imagenet64": (
        "--attention_resolutions 32,16,8 --class_cond True --use_scale_shift_norm True --image_size 64 "
        "--num_channels 192 --num_head_channels 64 --num_res_blocks 3 --resblock_updown True --use_fp16 True",
        "ImageNet 64x64, class-conditional",
    ),
    "bedroom256": (
        "--attention_resolutions 32,16,8 --class_cond False --use_scale_shift_norm False --image_size 256 "
        "--num_channels 256 --num_head_channels 64 --num_res_blocks 2 --resblock_updown True --use_fp16 True",
        "LSUN bedroom 256x256, unconditional",
    ),
    "cat256": (
        "--attention_resolutions 32,16,8 --class_cond False --use_scale_shift_norm False --image_size 256 "
        "--num_channels 256 --num_head_channels 64 --num_res_blocks 2 --resblock_updown True --use_fp16 True",
        "LSUN cat 256x256, unconditional",
    ),
}
SIGMAS = "--sigma_max 80 --sigma_min 0.002"
CM_MODE = {  # kind -> flags of the training mode (dropout: the EDM teachers trained with 0.1)
    "edm": f"--training_mode edm --dropout 0.1 --weight_schedule karras {SIGMAS}",
    "cd": f"--training_mode consistency_distillation --dropout 0.0 --weight_schedule uniform {SIGMAS}",
    "ct": f"--training_mode consistency_training --dropout 0.0 --weight_schedule uniform {SIGMAS}",
}
# EDM's Heun as launch.sh runs it: 40 Karras levels (79 evaluations), no churn; the churn window is
# image_sample.py's default (s_tmax inf: unset, no upper limit).
HEUN = SamplingDefaults(sampler="heun", steps="79", batch_size=4,
                        options={"s_churn": 0.0, "s_tmin": 0.0, "s_tmax": None, "s_noise": 1.0})


def _two_steps(ts: str, karras_steps: int) -> SamplingDefaults:
    """launch.sh's multistep sampling: ``--ts`` indices into a Karras grid of ``--steps`` levels."""
    return SamplingDefaults(sampler="cm", steps=ts, batch_size=4, options={"karras_steps": karras_steps})


# (kind, dataset, variant) -> (sampling, results, note)
CM_MODELS = {
    ("edm", "imagenet64", ""): (HEUN, {"fid": 2.44}, EDM_TEACHER),
    ("cd", "imagenet64", "l2"): (_two_steps("0,22,39", 40), {}, "no FID published for the l2 metric"),
    ("cd", "imagenet64", "lpips"): (_two_steps("0,22,39", 40), {"fid_1step": 6.20, "fid_2step": 4.70}, ""),
    ("ct", "imagenet64", ""): (_two_steps("0,106,200", 201), {"fid_1step": 13.0, "fid_2step": 11.1}, ""),
    ("edm", "bedroom256", ""): (HEUN, {"fid": 3.57}, EDM_TEACHER),
    ("cd", "bedroom256", "l2"): (_two_steps("0,18,39", 40), {}, "no FID published for the l2 metric"),
    ("cd", "bedroom256", "lpips"): (_two_steps("0,17,39", 40), {"fid_1step": 7.80, "fid_2step": 5.22}, ""),
    ("ct", "bedroom256", ""): (_two_steps("0,67,150", 151), {"fid_1step": 16.0, "fid_2step": 7.85}, ""),
    ("edm", "cat256", ""): (HEUN, {"fid": 6.69}, EDM_TEACHER),
    # launch.sh gives no two-step indices for the cat CD models: one step, as its LSUN command.
    ("cd", "cat256", "l2"): (SamplingDefaults(sampler="cm", steps="1", batch_size=4), {},
                             "one step by default (scripts/launch.sh publishes no two-step --ts for cat); "
                             "no FID published for the l2 metric"),
    ("cd", "cat256", "lpips"): (SamplingDefaults(sampler="cm", steps="1", batch_size=4),
                                {"fid_1step": 11.0, "fid_2step": 8.84},
                                "one step by default (scripts/launch.sh publishes no two-step --ts for cat)"),
    ("ct", "cat256", ""): (_two_steps("0,62,150", 151), {"fid_1step": 20.7, "fid_2step": 11.7}, ""),
}
CM_KIND = {"edm": "EDM teacher", "cd": "consistency distillation", "ct": "consistency training"}
# The ImageNet-64 EDM teacher may be guided by guided-diffusion's released 64x64 classifier (trained
# on ADM-64's 1000-step cosine process, whose t it reads at each σ). Unguided by default, as the
# consistency-models paper samples it; the guided recipe is not measured (no checkpoints here).
GUIDED_EDM = {"classifier_flags": adm_classifier(64, depth=4), "classifier_checkpoint": "64-classifier",
              "classifier_noise": "--diffusion_steps 1000 --noise_schedule cosine"}


def _consistency() -> list[tuple[Preset, Artifact]]:
    """The twelve consistency_models releases."""
    found = []
    for (kind, data, variant), (sampling, results, note) in CM_MODELS.items():
        flags, what = CM_DATA[data]
        metric = f" ({'L2' if variant == 'l2' else 'LPIPS'} metric)" if variant else ""
        file = {"edm": f"edm_{data}_ema.pt", "cd": f"cd_{data}_{variant}.pt", "ct": f"ct_{data}.pt"}[kind]
        name = "-".join(filter(None, (kind, data, variant)))
        found.append(_openai(CM_URL, file, name, name=name,
                             description=f"{what}, {CM_KIND[kind]}{metric}" + (f"; {note}" if note else ""),
                             model_flags=f"{CM_MODE[kind]} {flags}", sampling=sampling, results=results,
                             source=CM_SOURCE, **(GUIDED_EDM if name == "edm-imagenet64" else {})))
    return found


# --------------------------------------------------------------------------- third-party

# The "lightweight ADM" (93M parameters) of ILVR and P2-weighting, as jychoi118/ilvr_adm README.md and
# jychoi118/P2-weighting README.md give it; DPS2022/diffusion-posterior-sampling
# configs/model_config.yaml has the same values for ffhq_10m.pt.
LIGHT_ADM = (
    "--attention_resolutions 16 --class_cond False --diffusion_steps 1000 --dropout 0.0 --image_size 256 "
    "--learn_sigma True --noise_schedule linear --num_channels 128 --num_head_channels 64 --num_res_blocks 1 "
    "--resblock_updown True --use_fp16 False --use_scale_shift_norm True"
)
# RePaint's confs/test_c256_*.yml and test_p256_*.yml (andreas128/RePaint): the full ADM-256 network.
REPAINT_ADM = (
    "--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --learn_sigma True "
    "--noise_schedule linear --num_channels 256 --num_head_channels 64 --num_heads 4 --num_res_blocks 2 "
    "--resblock_updown True --use_fp16 False --use_scale_shift_norm True --image_size 256 --dropout 0.0 "
    "--rescale_timesteps False"
)
# Disco Diffusion's model_config for this file (alembics/disco-diffusion disco.py).
DISCO_512 = (
    "--attention_resolutions 32,16,8 --class_cond False --diffusion_steps 1000 --rescale_timesteps True "
    "--image_size 512 --learn_sigma True --noise_schedule linear --num_channels 256 --num_head_channels 64 "
    "--num_res_blocks 2 --resblock_updown True --use_fp16 True --use_scale_shift_norm True"
)
DISCO_FILE = "512x512_diffusion_uncond_finetune_008100.pt"
DRIVE = "https://drive.google.com/file/d/{}/view"
IMPORT = "Google Drive, no direct download: fetch it from this page and run `adm download {} --from-file FILE`"

P2_MODELS = {  # preset -> (file, Google Drive id, dataset), as jychoi118/P2-weighting README.md lists them
    "p2-ffhq256-baseline": ("ffhq_baseline.pt", "17SR1lih6BxBxJhr8s1iOjhw540H3Pc_m", "FFHQ"),
    "p2-ffhq256": ("ffhq_p2.pt", "1nlCPBqOqSeqAQ8F4noThbnmr4okriwTc", "FFHQ"),
    "p2-celebahq256": ("celebahq_p2.pt", "1ag8JnvKGKo6L6avO_dTFEBNWJo2jZIDF", "CelebA-HQ"),
    "p2-cub256-baseline": ("cub_baseline.pt", "1Wv-hHL7bhGsWyCp3i-RK6YcodcRrD-dj", "CUB"),
    "p2-cub256": ("cub_p2.pt", "13RKF9MLNR3zpMMNchW7JtsjktVMgS0rK", "CUB"),
    "p2-afhqdog256-baseline": ("afhq_baseline.pt", "1bv-xnJC1-qBg9ZlVdugsXLuHVsKj1RRE", "AFHQ-dog"),
    "p2-afhqdog256": ("afhq_p2.pt", "1f6_swzSPNJXs9FWf6AW585bv7dORzRWf", "AFHQ-dog"),
    "p2-flowers256-baseline": ("flower_baseline.pt", "1sAO2OJ8j1kza2zH8MerbD6hGxdKsoogB", "Flowers"),
    "p2-flowers256": ("flower_p2.pt", "1d6DDKAEu_iwNzxlBaVrETHBcc6oF5jYf", "Flowers"),
    "p2-metfaces256-baseline": ("metface_baseline.pt", "1SaHqew52S9iRCeN7kpPMLqlo2t34ekTb", "MetFaces"),
    "p2-metfaces256": ("metface_p2.pt", "1swjgSB1WFF9JnBR6W6Newnfzdyo1nPYf", "MetFaces"),
}
NO_RESULTS = "no published results recorded (not found in the sources read)"


def _third_party() -> list[tuple[Preset, Artifact]]:
    """The widely reused third-party guided-diffusion U-Nets."""
    ilvr = "jychoi118/ilvr_adm README.md (flags, --timestep_respacing 100)"
    ilvr_sampling = SamplingDefaults(sampler="ddpm", steps="100", batch_size=4)
    found = [
        _drive("ilvr-ffhq256", "ffhq_10m.pt", DRIVE.format("117Y6Z6-Hg6TMZVIXMmgYbpZy7QvTXign"),
               model_flags=LIGHT_ADM, sampling=ilvr_sampling,
               description=f"FFHQ 256x256, unconditional (ILVR; reused by DPS); {NO_RESULTS}",
               source=f"{ilvr}; DPS2022/diffusion-posterior-sampling configs/model_config.yaml (same flags)"),
        _drive("ilvr-afhqdog256", "afhq_dog_4m.pt", DRIVE.format("14OG_o3aa8Hxmfu36IIRyOgRwEP6ngLdo"),
               model_flags=LIGHT_ADM, sampling=ilvr_sampling, source=ilvr,
               description=f"AFHQ-dog 256x256, unconditional (ILVR); {NO_RESULTS}"),
    ]
    for name, (file, drive_id, data) in P2_MODELS.items():
        kind = "baseline weighting" if name.endswith("-baseline") else "P2 weighting"
        found.append(_drive(name, file, DRIVE.format(drive_id), model_flags=LIGHT_ADM,
                            description=f"{data} 256x256, unconditional, {kind}; {NO_RESULTS}",
                            source="jychoi118/P2-weighting README.md (flags, --timestep_respacing 250)",
                            sampling=SamplingDefaults(sampler="ddpm", steps="250", batch_size=4)))
    repaint = SamplingDefaults(sampler="ddpm", steps="250", batch_size=4)
    found += [
        _drive("repaint-celebahq256", "celeba256_250000.pt",
               "https://drive.google.com/uc?id=1norNWWGYP3EZ_o05DmoW1ryKuKMmhlCX", model_flags=REPAINT_ADM,
               sampling=repaint, description=f"CelebA-HQ 256x256, unconditional (RePaint's model); {NO_RESULTS}",
               source="andreas128/RePaint confs/face_example.yml, confs/test_c256_*.yml; file from download.sh"),
        # download.sh fetches two Drive files without naming them; downstream scripts name the
        # first celeba256_250000.pt, so this one is the other (the confs' places256_300000.pt).
        _drive("repaint-places256", "places256_300000.pt",
               "https://drive.google.com/uc?id=1QEl-btGbzQz6IwkXiFGd49uQNTUtTHsk", model_flags=REPAINT_ADM,
               sampling=repaint, description=f"Places2 256x256, unconditional (RePaint's model); {NO_RESULTS}",
               source="andreas128/RePaint confs/test_p256_*.yml; file from download.sh"),
    ]
    disco = "disco-512-uncond"
    found.append((
        Preset(name=disco, family="third-party", model_flags=DISCO_512, checkpoint=disco,
               description="ImageNet 512x512, unconditional fine-tune of the 512 ADM (Katherine Crowson); "
               "Disco Diffusion adds CLIP guidance, which adm does not; " + NO_RESULTS,
               source="alembics/disco-diffusion disco.py (model_config, download list with sha256, "
               "DDIM 250 steps, eta 0.8, clip_denoised False)",
               sampling=SamplingDefaults(sampler="ddim", steps="ddim250", options={"eta": 0.8}, batch_size=4,
                                         clip_denoised=False)),
        # Cached under a shorter name than the published one (DISCO_FILE), which would not fit
        # `adm download --list` beside the other names at 80 columns; mirrors serve the published name.
        Artifact(name=disco, kind="checkpoint", filename="512x512_diffusion_uncond_ft.pt", mirror_path=DISCO_FILE,
                 url=f"https://huggingface.co/lowlevelware/512x512_diffusion_unconditional_ImageNet/resolve/main/"
                 f"{DISCO_FILE}",
                 sha256="9c111ab89e214862b76e1fa6a1b3f1d329b1a88281885943d2cdbe357ad57648",
                 description=f"{DISCO_FILE}: Disco Diffusion's 512x512 unconditional fine-tune (its first "
                 "download URL; originally on v-diffusion.s3.us-west-2.amazonaws.com)"),
    ))
    return found


def _drive(name: str, filename: str, page: str, **preset) -> tuple[Preset, Artifact]:
    """A third-party preset whose checkpoint (an artifact of the same name) lives on Google Drive."""
    artifact = Artifact(name=name, url=page, filename=filename, kind="checkpoint", import_only=True,
                        description=IMPORT.format(name))
    return Preset(name=name, family="third-party", checkpoint=name, **preset), artifact


# --------------------------------------------------------------------------- all of them


def family_presets() -> list[tuple[Preset, Artifact]]:
    """Every preset of this module with the artifact of its checkpoint."""
    return [*_improved(), *_consistency(), *_third_party()]
