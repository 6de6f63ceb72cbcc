"""`adm convert IN OUT`: re-save a checkpoint as safetensors (or back), values unchanged; a
consistency_models checkpoint comes out in adm's (guided-diffusion's) form."""

from __future__ import annotations

from pathlib import Path

import typer

from adm.cli.common import console, guarded
from adm.core.errors import UsageError

FORMATS = (".pt", ".pth", ".safetensors")


@guarded
def convert(
    src: Path = typer.Argument(..., help="Checkpoint to read (.pt/.pth, or .safetensors)."),
    dst: Path = typer.Argument(..., help="File to write; the format follows its suffix."),
) -> None:
    """Convert a checkpoint between .pt and .safetensors (loaded safely, written atomically).

    consistency_models' 4-D attention weights are written 3-D, as guided-diffusion stores them.
    """
    if dst.suffix not in FORMATS:
        raise UsageError(f"cannot tell the output format from {dst.name!r}", "name it *.safetensors or *.pt")
    if dst.resolve() == src.resolve():
        raise UsageError("input and output are the same file")
    from adm.api.downloads import convert_checkpoint  # torch: loaded when the command runs

    convert_checkpoint(src, dst)
    console.print(f"wrote {dst}", highlight=False, soft_wrap=True)
