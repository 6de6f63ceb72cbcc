"""`adm edit`: image-to-image, class transfer, inpainting and inversion; options in, ``adm.edit`` does it.

The edit options come from ``adm.sampling.edit.EditSettings``, the sampling and run options from
the API's shared objects (``adm.cli.sample_cmd``).
"""

from __future__ import annotations

from pathlib import Path

import typer

from adm.api.options import EditSettings
from adm.cli.common import guarded
from adm.cli.config_options import Rename, config_options
from adm.cli.sample_cmd import (
    CLASSIFIER_FLAGS,
    CLASSIFIER_PATH,
    CLASSIFIER_RUN_DIR,
    EMA_RATE,
    GUIDE_FLAGS,
    GUIDE_MODEL,
    MODEL_FLAGS,
    MODEL_PATH,
    PRESET,
    QUIET,
    RUN_DIR,
    WEIGHTS,
    render,
    run_options,
    sampling_options,
)


@guarded
@config_options(EditSettings, param="editing", rename={
    "strength": Rename("--strength", "How far to noise the inputs, in (0, 1]: 0.2 keeps details, 0.8 keeps the layout. "
                       "Default: 0.6; 1 with --mask (the hidden pixels are not a starting point)."),
    "invert": Rename("--invert", "Start from the DDIM inversion of the inputs instead of fresh noise (--sampler ddim).",
                     flag=True),
    "inpaint": Rename("--inpaint", "x0: put the known pixels into every x0 estimate (any sampler); repaint: RePaint's "
                      "resampling (--sampler ddpm). Default: x0."),
    "jumps": Rename("--jumps", "repaint: how many times each stretch of --jump-length steps is resampled "
                    "(1: plain replacement). Default: 1."),
    "jump_length": Rename("--jump-length", "repaint: steps per resampled stretch. Default: 10."),
})
@sampling_options(scale_help="Classifier scale (default: the preset's; 0 with --invert reconstructs).")
@run_options(num_samples_help="How many inputs to edit (default: all).",
             seed_help="Edit i depends only on (seed, i, input i, mask i): same seed, same edits. Default: 0.",
             out_help="Output .npz (default: INPUT-edit.npz); a PNG grid (input | mask | output) and a JSON sidecar "
             "go beside it.")
def edit(
    editing: dict,
    sampling: dict,
    run: dict,
    inputs: Path = typer.Argument(..., metavar="INPUT", help="Images to edit: a folder, or an npz (arr_0 uint8 NHWC; arr_1 their labels).", show_default=False),
    preset: str | None = PRESET,
    classes: str | None = typer.Option(None, "--classes", help="Target classes, as in `adm sample` (class transfer); default: the inputs' own labels (arr_1), else the preset's."),
    mask: Path | None = typer.Option(None, "--mask", help="Inpainting: a mask image (one for all), a folder of them or an npz; white = keep.", show_default=False),
    save_latents: Path | None = typer.Option(None, "--save-latents", help="Also write the starting latents (the inversions) to this npz.", show_default=False),
    model_path: Path | None = MODEL_PATH,
    classifier_path: Path | None = CLASSIFIER_PATH,
    model_flags: str | None = MODEL_FLAGS,
    classifier_flags: str | None = CLASSIFIER_FLAGS,
    classifier_run_dir: Path | None = CLASSIFIER_RUN_DIR,
    run_dir: Path | None = RUN_DIR,
    weights: str = WEIGHTS,
    ema_rate: float | None = EMA_RATE,
    guide_model: str | None = GUIDE_MODEL,
    guide_flags: str | None = GUIDE_FLAGS,
    quiet: bool = QUIET,
) -> None:
    """Edit real images: image-to-image (SDEdit), class transfer, inpainting, DDIM inversion."""
    from adm.api.editing import edit as edit_images
    from adm.api.sources import ModelSource

    source = ModelSource(preset, model_flags, model_path, run_dir, classifier_flags, classifier_path, weights, ema_rate,
                         classifier_run_dir, guide_model, guide_flags)
    render(edit_images, run, inputs.with_name(inputs.stem + "-edit.npz"), quiet, source=source, inputs=inputs,
           classes=classes, mask=mask, save_latents=save_latents, **editing, **sampling)
