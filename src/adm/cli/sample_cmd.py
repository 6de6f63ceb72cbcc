"""`adm sample` and `adm upsample`: parse options, call ``adm.pipeline``, report where files went."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import typer

from adm.cli.common import console, guarded
from adm.cli.progress import RichProgress
from adm.distributed import joined
from adm.errors import AdmError, UsageError
from adm.pipeline import ModelSource, Samples
from adm.pipeline import sample as sample_images
from adm.pipeline import upsample as upsample_images
from adm.sampling.job import grid_path
from adm.sampling.shards import ShardStore


class AdmInterrupt(AdmError):
    exit_code = 130

PRESET = typer.Option(None, "--preset", "-p", help="Named preset (`adm presets` lists them).")
MODEL_FLAGS = typer.Option(None, "--model-flags", help='Model flags in the original syntax, e.g. "--image_size 64 ..." (instead of --preset).')
MODEL_PATH = typer.Option(None, "--model-path", help="Model checkpoint (.pt/.safetensors); default: the preset's download.")
STEPS = typer.Option(
    None, "--steps",
    help='Solvers (dpm++2m, dpm++2m-sde, heun, unipc): network evaluations, e.g. 20. ddpm/ddim: a respacing, '
    '"250", "ddim25", "10,15,20". Default: --steps, else the flags\' --timestep_respacing (ddpm/ddim), else the '
    "preset's (same kind of sampler), else every step of the model's chain (ddpm/ddim, as the original) or 20.",
)
SAMPLER = typer.Option(None, "--sampler", help="ddpm, ddim, dpm++2m, dpm++2m-sde, heun, unipc or a plugin's (`adm samplers`); default: the preset's.")
SPACING = typer.Option(None, "--spacing", help="Where the steps lie: respaced (the original's chain), time, logsnr or karras (default: the sampler's).")
SAMPLER_OPT = typer.Option(None, "--sampler-opt", help="A sampler option KEY=VALUE, repeatable, e.g. order=1 (`adm samplers` lists them).")
ETA = typer.Option(None, "--eta", help="Shorthand for --sampler-opt eta=VALUE (ddim, dpm++2m-sde).")
THRESHOLD = typer.Option(None, "--threshold", help="Dynamic thresholding of x0 at this quantile (e.g. 0.995) instead of clipping; helps strong guidance.")
BATCH = typer.Option(None, "--batch-size", "-b", help="Images per forward pass (default: the preset's).")
SEED = typer.Option(0, "--seed", help="Sample i depends only on (seed, i): same seed, same images.")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: the best available).")
PRECISION = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (default: fp16 on CUDA for models released with use_fp16, else fp32; bf16 is about 2x faster on CPUs with native bf16; docs/performance.md).")
COMPILE = typer.Option(False, "--compile", help="torch.compile the diffusion model (a one-time cost; pays off for long GPU runs).")
DOWNLOAD = typer.Option(False, "--download", help="Fetch missing checkpoints into the cache first.")
CLIP = typer.Option(None, "--clip-denoised/--no-clip-denoised", help="Clamp the x0 estimate to [-1, 1] (default: the preset's, else on, as the original).", show_default=False)
GRID = typer.Option(64, "--grid", help="How many samples the PNG grid shows (0: none).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar or summary.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an output (and shards) that a different command made, instead of refusing.")


@contextmanager
def resumable(out: Path):
    """Ctrl-C says where the finished batches are and how to continue."""
    try:
        yield
    except KeyboardInterrupt:
        raise AdmInterrupt(
            f"interrupted: finished batches are kept in {ShardStore(out).folder}",
            "run the same command to continue",
        ) from None


def parse_sampler_options(values: list[str] | None) -> dict[str, str]:
    """``["order=1", "eta=0.5"]`` → ``{"order": "1", "eta": "0.5"}`` (the sampler converts the types)."""
    options: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--sampler-opt expects KEY=VALUE, got {item!r}", "e.g. --sampler-opt order=1")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def parse_interval(text: str) -> tuple[float, float]:
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"--guidance-interval expects LO,HI in [0, 1], got {text!r}", "e.g. 0.2,0.8") from None
    return lo, hi


def summary(samples: Samples, quiet: bool) -> None:
    if quiet:
        return
    result = samples.result
    how = f"{result.already_done} reused, {result.computed} sampled" if result.already_done else f"{result.computed} sampled"
    console.print(f"wrote {samples.path} ({result.num_samples} images; {how})")
    if grid_path(samples.path).is_file():
        console.print(f"grid  {grid_path(samples.path)}")


@guarded
def sample(
    preset: str | None = PRESET,
    scale: float | None = typer.Option(None, "--scale", "-s", help="Classifier scale (default: the preset's; 0 = no classifier)."),
    sampler: str | None = SAMPLER,
    steps: str | None = STEPS,
    spacing: str | None = SPACING,
    sampler_opt: list[str] | None = SAMPLER_OPT,
    eta: float | None = ETA,
    threshold: float | None = THRESHOLD,
    guidance_interval: str = typer.Option("0,1", "--guidance-interval", help="Apply the classifier only where LO <= t/T <= HI (e.g. 0,0.6); it is not run elsewhere."),
    num_samples: int | None = typer.Option(None, "--num-samples", "-n", help="How many images (default: the preset's, else 16; the paper's FIDs use 50000)."),
    batch_size: int | None = BATCH,
    seed: int = SEED,
    classes: str | None = typer.Option(None, "--classes", help="random (the original's way), balanced, a comma list of ids, or a file of ids (default: the preset's, else random)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output .npz (default: PRESET_samples.npz); a PNG grid and a JSON sidecar go beside it."),
    device: str | None = DEVICE,
    precision: str | None = PRECISION,
    compile_: bool = COMPILE,
    model_path: Path | None = MODEL_PATH,
    classifier_path: Path | None = typer.Option(None, "--classifier-path", help="Classifier checkpoint; default: the preset's download."),
    model_flags: str | None = MODEL_FLAGS,
    classifier_flags: str | None = typer.Option(None, "--classifier-flags", help="Classifier flags in the original syntax."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="A training run directory (`adm train`): its flags and newest checkpoint."),
    weights: str = typer.Option("ema", "--weights", help="With --run-dir: ema (the newest checkpoint's slowest EMA) or model (the raw weights)."),
    ema_rate: float | None = typer.Option(None, "--ema-rate", help="With --run-dir: the EMA of this rate (e.g. 0.999).", show_default=False),
    upsample: str | None = typer.Option(None, "--upsample", help="Then upsample the samples with this preset (cascade), e.g. upsample-64-256."),
    download: bool = DOWNLOAD,
    clip_denoised: bool | None = CLIP,
    grid: int = GRID,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
) -> None:
    """Sample images from a preset or your own model, with classifier guidance."""
    with joined(device) as dist:
        out = out or Path(f"{preset or 'model'}_samples.npz")
        if weights not in ("ema", "model"):
            raise UsageError(f"--weights must be ema or model, got {weights!r}")
        source = ModelSource(preset, model_flags, model_path, run_dir, classifier_flags, classifier_path, weights, ema_rate)
        with RichProgress(enabled=dist.is_main and not quiet) as progress, resumable(out):
            samples = sample_images(
                source=source, scale=scale, sampler=sampler, steps=steps, spacing=spacing,
                sampler_options=parse_sampler_options(sampler_opt), eta=eta, threshold=threshold,
                guidance_interval=parse_interval(guidance_interval), num_samples=num_samples,
                batch_size=batch_size, seed=seed, classes=classes, clip_denoised=clip_denoised,
                precision=precision, compile=compile_, download=download, out=out, overwrite=overwrite, grid=grid,
                then_upsample=upsample, dist=dist, on_progress=progress,
            )
        if dist.is_main:
            summary(samples, quiet)
            if samples.upsampled is not None:
                summary(samples.upsampled, quiet)


@guarded
def upsample(
    preset: str | None = PRESET,
    base_samples: Path = typer.Option(..., "--base-samples", help="Low-resolution images: an .npz (arr_0, arr_1 labels) or a folder of PNGs."),
    num_samples: int | None = typer.Option(None, "--num-samples", "-n", help="How many to upsample (default: all)."),
    batch_size: int | None = BATCH,
    seed: int = SEED,
    sampler: str | None = SAMPLER,
    steps: str | None = STEPS,
    spacing: str | None = SPACING,
    sampler_opt: list[str] | None = SAMPLER_OPT,
    eta: float | None = ETA,
    threshold: float | None = THRESHOLD,
    out: Path | None = typer.Option(None, "--out", "-o", help="Output .npz (default: BASE-up.npz)."),
    device: str | None = DEVICE,
    precision: str | None = PRECISION,
    model_path: Path | None = MODEL_PATH,
    model_flags: str | None = MODEL_FLAGS,
    download: bool = DOWNLOAD,
    clip_denoised: bool | None = CLIP,
    grid: int = GRID,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
) -> None:
    """Upsample low-resolution samples with an upsampler preset (ADM-U), conditioned on their labels."""
    with joined(device) as dist:
        out = out or base_samples.with_name(base_samples.stem + "-up.npz")
        with RichProgress(enabled=dist.is_main and not quiet) as progress, resumable(out):
            samples = upsample_images(
                source=ModelSource(preset, model_flags, model_path), base_samples=base_samples,
                num_samples=num_samples, batch_size=batch_size, seed=seed, sampler=sampler, steps=steps, spacing=spacing,
                sampler_options=parse_sampler_options(sampler_opt), eta=eta, threshold=threshold,
                clip_denoised=clip_denoised, precision=precision, download=download,
                out=out, overwrite=overwrite, grid=grid, dist=dist,
                on_progress=progress,
            )
        if dist.is_main:
            summary(samples, quiet)
