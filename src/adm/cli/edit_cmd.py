"""`adm edit`: image-to-image, class transfer, inpainting and inversion; options in, ``adm.edit`` does it."""

from __future__ import annotations

from pathlib import Path

import typer

from adm.cli.common import guarded
from adm.cli.progress import RichProgress
from adm.cli.sample_cmd import (
    BATCH,
    CLIP,
    DEVICE,
    DOWNLOAD,
    ETA,
    GRID,
    MODEL_FLAGS,
    MODEL_PATH,
    OVERWRITE,
    PRECISION,
    PRESET,
    QUIET,
    SAMPLER,
    SAMPLER_OPT,
    SEED,
    SPACING,
    STEPS,
    THRESHOLD,
    parse_interval,
    parse_sampler_options,
    resumable,
    summary,
)
from adm.distributed import joined
from adm.pipeline import ModelSource
from adm.pipeline import edit as edit_images


@guarded
def edit(
    inputs: Path = typer.Argument(..., metavar="INPUT", help="Images to edit: a folder, or an npz (arr_0 uint8 NHWC; arr_1 their labels).", show_default=False),
    preset: str | None = PRESET,
    strength: float = typer.Option(0.6, "--strength", help="How far to noise the inputs, in (0, 1]: 0.2 keeps details, 0.8 keeps the layout."),
    classes: str | None = typer.Option(None, "--classes", help="Target classes, as in `adm sample` (class transfer); default: the inputs' own labels (arr_1), else the preset's."),
    mask: Path | None = typer.Option(None, "--mask", help="Inpainting: a mask image (one for all), a folder of them or an npz; white = keep.", show_default=False),
    inpaint: str = typer.Option("x0", "--inpaint", help="x0: put the known pixels into every x0 estimate (any sampler); repaint: RePaint's resampling (--sampler ddpm)."),
    jumps: int = typer.Option(1, "--jumps", help="repaint: how many times each stretch of --jump-length steps is resampled (1: plain replacement)."),
    jump_length: int = typer.Option(10, "--jump-length", help="repaint: steps per resampled stretch."),
    invert: bool = typer.Option(False, "--invert", help="Start from the DDIM inversion of the inputs instead of fresh noise (--sampler ddim)."),
    save_latents: Path | None = typer.Option(None, "--save-latents", help="Also write the starting latents (the inversions) to this npz.", show_default=False),
    scale: float | None = typer.Option(None, "--scale", "-s", help="Classifier scale (default: the preset's; 0 with --invert reconstructs)."),
    sampler: str | None = SAMPLER,
    steps: str | None = STEPS,
    spacing: str | None = SPACING,
    sampler_opt: list[str] | None = SAMPLER_OPT,
    eta: float | None = ETA,
    threshold: float | None = THRESHOLD,
    guidance_interval: str = typer.Option("0,1", "--guidance-interval", help="Apply the classifier only where LO <= t/T <= HI."),
    num_samples: int | None = typer.Option(None, "--num-samples", "-n", help="How many inputs to edit (default: all)."),
    batch_size: int | None = BATCH,
    seed: int = SEED,
    out: Path | None = typer.Option(None, "--out", "-o", help="Output .npz (default: INPUT-edit.npz); a PNG grid (input | mask | output) and a JSON sidecar go beside it."),
    device: str | None = DEVICE,
    precision: str | None = PRECISION,
    model_path: Path | None = MODEL_PATH,
    classifier_path: Path | None = typer.Option(None, "--classifier-path", help="Classifier checkpoint; default: the preset's download."),
    model_flags: str | None = MODEL_FLAGS,
    classifier_flags: str | None = typer.Option(None, "--classifier-flags", help="Classifier flags in the original syntax."),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="A training run directory (`adm train`): its flags and newest checkpoint."),
    download: bool = DOWNLOAD,
    clip_denoised: bool | None = CLIP,
    grid: int = GRID,
    overwrite: bool = OVERWRITE,
    quiet: bool = QUIET,
) -> None:
    """Edit real images: image-to-image (SDEdit), class transfer, inpainting, DDIM inversion."""
    with joined(device) as dist:
        out = out or inputs.with_name(inputs.stem + "-edit.npz")
        source = ModelSource(preset, model_flags, model_path, run_dir, classifier_flags, classifier_path)
        with RichProgress(enabled=dist.is_main and not quiet) as progress, resumable(out):
            edited = edit_images(
                source=source, inputs=inputs, strength=strength, invert=invert, mask=mask, inpaint=inpaint, jumps=jumps,
                jump_length=jump_length, classes=classes, save_latents=save_latents, scale=scale, sampler=sampler,
                steps=steps, spacing=spacing, sampler_options=parse_sampler_options(sampler_opt), eta=eta,
                threshold=threshold, guidance_interval=parse_interval(guidance_interval), num_samples=num_samples,
                batch_size=batch_size, seed=seed, clip_denoised=clip_denoised, precision=precision, download=download,
                out=out, overwrite=overwrite, grid=grid, dist=dist, on_progress=progress,
            )
        if dist.is_main:
            summary(edited, quiet)
