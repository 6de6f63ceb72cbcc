"""`adm data`: write the built-in datasets (the offline digits demo) where training can read them."""

from __future__ import annotations

from pathlib import Path

import typer

from adm.api.downloads import write_digits
from adm.cli.common import AdmCommand, AdmGroup, console, guarded

app = typer.Typer(help="Write built-in datasets (offline, no downloads).", no_args_is_help=True, cls=AdmGroup)


@app.command("digits", cls=AdmCommand)
@guarded
def digits(
    out: Path = typer.Argument(..., help="Output: an .npz file, or a folder with --format png."),
    split: str = typer.Option("all", "--split", help="all, train (4 of 5 images) or heldout (every fifth)."),
    image_format: str = typer.Option("npz", "--format", help="npz (arr_0 images, arr_1 labels) or png (LABEL_INDEX.png files)."),
    grayscale: bool = typer.Option(False, "--grayscale", help="One channel (grayscale L PNGs, npz [N, H, W]): trains a 1-channel model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing files instead of refusing."),
) -> None:
    """scikit-learn's 1,797 handwritten digits as 16x16 RGB (or --grayscale) images with labels."""
    path = write_digits(out, split=split, image_format=image_format, overwrite=overwrite, grayscale=grayscale)
    console.print(f"wrote {path}", highlight=False, soft_wrap=True)
