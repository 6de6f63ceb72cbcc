"""Resizing and cropping images to a network's square size (the original's image_datasets
``center_crop_arr`` / ``random_crop_arr``, re-derived): what training and editing both feed in."""

from __future__ import annotations

import math

import numpy as np
import torch

MIN_CROP_FRAC = 0.8
MAX_CROP_FRAC = 1.0


def _resize_smaller_side(image, target: int):
    """Halve with BOX filtering while the smaller side is at least 2x the target, then BICUBIC."""
    from PIL import Image

    while min(image.size) >= 2 * target:
        image = image.resize((image.size[0] // 2, image.size[1] // 2), resample=Image.BOX)
    scale = target / min(image.size)
    return image.resize(tuple(round(side * scale) for side in image.size), resample=Image.BICUBIC)


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """Resize so the smaller side is ``size``, then take the central ``size x size`` square."""
    if array.shape[0] == size and array.shape[1] == size:
        return array
    from PIL import Image

    out = np.asarray(_resize_smaller_side(Image.fromarray(array), size))
    top, left = (out.shape[0] - size) // 2, (out.shape[1] - size) // 2
    return out[top : top + size, left : left + size]


def random_crop(array: np.ndarray, size: int, generator: torch.Generator) -> np.ndarray:
    """Resize the smaller side to a random value in [size/1.0, size/0.8], then crop at random."""
    from PIL import Image

    low, high = math.ceil(size / MAX_CROP_FRAC), math.ceil(size / MIN_CROP_FRAC)
    side = int(torch.randint(low, high + 1, (), generator=generator))
    out = np.asarray(_resize_smaller_side(Image.fromarray(array), side))
    top = int(torch.randint(0, out.shape[0] - size + 1, (), generator=generator))
    left = int(torch.randint(0, out.shape[1] - size + 1, (), generator=generator))
    return out[top : top + size, left : left + size]
