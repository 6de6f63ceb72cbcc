"""`adm sample` and `adm upsample`: parse options, call ``adm.pipeline``, report where files went."""

from __future__ import annotations

from pathlib import Path

import typer

from adm.cli.common import console, guarded
from adm.cli.progress import RichProgress
from adm.distributed import joined
from adm.pipeline import ModelSource, Samples
from adm.pipeline import sample as sample_images
from adm.pipeline import upsample as upsample_images
from adm.sampling.job import grid_path

PRESET = typer.Option(None, "--preset", "-p", help="Named preset (`adm presets` lists them).")
MODEL_FLAGS = typer.Option(None, "--model-flags", help='Model flags in the original syntax, e.g. "--image_size 64 ..." (instead of --preset).')
MODEL_PATH = typer.Option(None, "--model-path", help="Model checkpoint (.pt/.safetensors); default: the preset's download.")
STEPS = typer.Option(None, "--steps", help='Respacing: "250", "ddim25", "10,15,20" (default: the preset\'s).')
SAMPLER = typer.Option(None, "--sampler", help="ddpm or ddim (default: the preset's).")
ETA = typer.Option(0.0, "--eta", help="DDIM eta (0 = deterministic).")
BATCH = typer.Option(None, "--batch-size", "-b", help="Images per forward pass (default: the preset's).")
SEED = typer.Option(0, "--seed", help="Sample i depends only on (seed, i): same seed, same images.")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: the best available).")
PRECISION = typer.Option(None, "--precision", help="fp32, fp16 or bf16 autocast (default: fp16 on CUDA for fp16 presets, else fp32).")
DOWNLOAD = typer.Option(False, "--download", help="Fetch missing checkpoints into the cache first.")
CLIP = typer.Option(True, "--clip-denoised/--no-clip-denoised", help="Clamp the x0 estimate to [-1, 1] (the original's default).")
GRID = typer.Option(64, "--grid", help="How many samples the PNG grid shows (0: none).")
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar or summary.")


def _summary(samples: Samples, quiet: bool) -> None:
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
    eta: float = ETA,
    num_samples: int | None = typer.Option(None, "--num-samples", "-n", help="How many images (default: the preset's, else 16; the paper's FIDs use 50000)."),
    batch_size: int | None = BATCH,
    seed: int = SEED,
    classes: str | None = typer.Option(None, "--classes", help="random (the original's way), balanced, a comma list of ids, or a file of ids (default: the preset's, else random)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output .npz (default: PRESET_samples.npz); a PNG grid and a JSON sidecar go beside it."),
    device: str | None = DEVICE,
    precision: str | None = PRECISION,
    model_path: Path | None = MODEL_PATH,
    classifier_path: Path | None = typer.Option(None, "--classifier-path", help="Classifier checkpoint; default: the preset's download."),
    model_flags: str | None = MODEL_FLAGS,
    classifier_flags: str | None = typer.Option(None, "--classifier-flags", help="Classifier flags in the original syntax."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="A training run directory (`adm train`): its flags and latest EMA weights."),
    upsample: str | None = typer.Option(None, "--upsample", help="Then upsample the samples with this preset (cascade), e.g. upsample-64-256."),
    download: bool = DOWNLOAD,
    clip_denoised: bool = CLIP,
    grid: int = GRID,
    quiet: bool = QUIET,
) -> None:
    """Sample images from a preset or your own model, with classifier guidance."""
    with joined(device) as dist:
        out = out or Path(f"{preset or 'model'}_samples.npz")
        source = ModelSource(preset, model_flags, model_path, run_dir, classifier_flags, classifier_path)
        with RichProgress(enabled=dist.is_main and not quiet) as progress:
            samples = sample_images(
                source=source, scale=scale, sampler=sampler, steps=steps, eta=eta, num_samples=num_samples,
                batch_size=batch_size, seed=seed, classes=classes, clip_denoised=clip_denoised,
                precision=precision, download=download, out=out, grid=grid, dist=dist, on_progress=progress,
            )
        if dist.is_main:
            _summary(samples, quiet)
        if upsample:
            with RichProgress(enabled=dist.is_main and not quiet) as progress:
                upsampled = upsample_images(
                    upsample, base_samples=out, seed=seed, clip_denoised=clip_denoised, precision=precision,
                    download=download, out=out.with_name(out.stem + "-up.npz"), grid=grid, dist=dist,
                    on_progress=progress,
                )
            if dist.is_main:
                _summary(upsampled, quiet)


@guarded
def upsample(
    preset: str | None = PRESET,
    base_samples: Path = typer.Option(..., "--base-samples", help="Low-resolution images: an .npz (arr_0, arr_1 labels) or a folder of PNGs."),
    num_samples: int | None = typer.Option(None, "--num-samples", "-n", help="How many to upsample (default: all)."),
    batch_size: int | None = BATCH,
    seed: int = SEED,
    sampler: str | None = SAMPLER,
    steps: str | None = STEPS,
    eta: float = ETA,
    out: Path | None = typer.Option(None, "--out", "-o", help="Output .npz (default: BASE-up.npz)."),
    device: str | None = DEVICE,
    precision: str | None = PRECISION,
    model_path: Path | None = MODEL_PATH,
    model_flags: str | None = MODEL_FLAGS,
    download: bool = DOWNLOAD,
    clip_denoised: bool = CLIP,
    grid: int = GRID,
    quiet: bool = QUIET,
) -> None:
    """Upsample low-resolution samples with an upsampler preset (ADM-U), conditioned on their labels."""
    with joined(device) as dist:
        with RichProgress(enabled=dist.is_main and not quiet) as progress:
            samples = upsample_images(
                source=ModelSource(preset, model_flags, model_path), base_samples=base_samples,
                num_samples=num_samples, batch_size=batch_size, seed=seed, sampler=sampler, steps=steps, eta=eta,
                clip_denoised=clip_denoised, precision=precision, download=download,
                out=out or base_samples.with_name(base_samples.stem + "-up.npz"), grid=grid, dist=dist,
                on_progress=progress,
            )
        if dist.is_main:
            _summary(samples, quiet)
