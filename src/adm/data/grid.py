"""PNG grids of samples: what people look at first.

A PNG shows what a PNG can hold: 1 channel as grayscale (``L``), 2 as grayscale + alpha
(``LA``), 3 as RGB, 4 as RGBA. Images of other channel counts are shown by their first channel,
in grayscale (``grid_note`` says so).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from adm.core.fileio import atomic_path

PNG_MODES = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


def grid_note(channels: int) -> str | None:
    """What a grid of ``channels``-channel images shows, when it is not every channel."""
    if channels in PNG_MODES:
        return None
    return f"the PNG grid shows channel 0 of the samples' {channels} in grayscale (a PNG holds 1 to 4 channels)"


def make_grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """uint8 ``[N, H, W, C]`` → one uint8 ``[rows*(H+p)+p, cols*(W+p)+p, C]`` image, row-major."""
    n, h, w, c = images.shape
    columns = min(columns or max(1, math.ceil(math.sqrt(n))), max(n, 1))  # 4 samples: no 6 blank cells
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + padding) + padding, columns * (w + padding) + padding, c), 255, dtype=np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def save_grid(images: np.ndarray, path: str | Path, columns: int | None = None, min_cell: int = 64) -> Path:
    """Write a PNG grid atomically; small images are upscaled (nearest) so the grid is viewable.

    uint8 ``[N, H, W, C]``: C of 1 to 4 as the PNG modes ``PNG_MODES``, any other by channel 0.
    """
    from PIL import Image

    if images.shape[-1] not in PNG_MODES:
        images = images[..., :1]
    factor = max(1, math.ceil(min_cell / images.shape[1]))
    if factor > 1:
        images = images.repeat(factor, axis=1).repeat(factor, axis=2)
    cells = make_grid(images, columns)
    grid = Image.fromarray(cells[..., 0] if cells.shape[-1] == 1 else cells)
    path = Path(path)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path
