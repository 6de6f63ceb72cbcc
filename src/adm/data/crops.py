"""Resizing and cropping images to a network's square size (the original's image_datasets
``center_crop_arr`` / ``random_crop_arr``, re-derived): what training and editing both feed in.

An 8-bit RGB image is resized whole by PIL, as the original did; any other (``[H, W]``, or
``[H, W, C]`` of any C, uint8, uint16 or float) channel by channel with the same filters: 8-bit
channels as PIL ``L`` images (the arithmetic of the RGB path), deeper ones in 32-bit float,
rounded and clipped back to their dtype's range.
"""

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


def _whole(array: np.ndarray) -> bool:
    """Whether PIL resizes the image as one: 8-bit RGB (the original's path), or ``[H, W]``."""
    return array.ndim == 2 or (array.shape[2] == 3 and array.dtype == np.uint8)


def _planes(array: np.ndarray) -> list:
    """The PIL images to resize: the image whole (``_whole``), else one per channel."""
    from PIL import Image

    if _whole(array):
        return [Image.fromarray(array if array.dtype == np.uint8 else array.astype(np.float32))]
    return [Image.fromarray(np.ascontiguousarray(array[..., c]) if array.dtype == np.uint8
                            else array[..., c].astype(np.float32)) for c in range(array.shape[2])]


def _joined(planes: list, like: np.ndarray) -> np.ndarray:
    """Resized planes back as one array of ``like``'s dtype and dimensions."""
    out = np.asarray(planes[0]) if _whole(like) else np.stack([np.asarray(plane) for plane in planes], -1)
    if like.dtype == np.uint8:
        return out
    if np.issubdtype(like.dtype, np.integer):
        return np.rint(out).clip(0, np.iinfo(like.dtype).max).astype(like.dtype)
    return out.clip(0, 1).astype(like.dtype)


def _resized(array: np.ndarray, target: int) -> np.ndarray:
    return _joined([_resize_smaller_side(plane, target) for plane in _planes(array)], array)


def center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """Resize so the smaller side is ``size``, then take the central ``size x size`` square."""
    if array.shape[0] == size and array.shape[1] == size:
        return array
    out = _resized(array, size)
    top, left = (out.shape[0] - size) // 2, (out.shape[1] - size) // 2
    return out[top : top + size, left : left + size]


def random_crop(array: np.ndarray, size: int, generator: torch.Generator) -> np.ndarray:
    """Resize the smaller side to a random value in [size/1.0, size/0.8], then crop at random."""
    low, high = math.ceil(size / MAX_CROP_FRAC), math.ceil(size / MIN_CROP_FRAC)
    side = int(torch.randint(low, high + 1, (), generator=generator))
    out = _resized(array, side)
    top = int(torch.randint(0, out.shape[0] - size + 1, (), generator=generator))
    left = int(torch.randint(0, out.shape[1] - size + 1, (), generator=generator))
    return out[top : top + size, left : left + size]
