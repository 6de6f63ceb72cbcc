"""PNG grids of samples: what people look at first."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from adm.core.fileio import atomic_path


def make_grid(images: np.ndarray, columns: int | None = None, padding: int = 2) -> np.ndarray:
    """uint8 ``[N, H, W, 3]`` → one uint8 ``[rows*(H+p)+p, cols*(W+p)+p, 3]`` image, row-major."""
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
    """Write a PNG grid atomically; small images are upscaled (nearest) so the grid is viewable."""
    from PIL import Image

    factor = max(1, math.ceil(min_cell / images.shape[1]))
    if factor > 1:
        images = images.repeat(factor, axis=1).repeat(factor, axis=2)
    grid = Image.fromarray(make_grid(images, columns))
    path = Path(path)
    with atomic_path(path) as tmp:
        grid.save(tmp, format="PNG")
    return path
