"""Images ↔ the networks' [-1, 1] tensors: uint8 with the original scripts' exact arithmetic, and
deeper pixels by their bit depth."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW floats → uint8 NHWC, truncating exactly as the original scripts do."""
    return ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def from_uint8(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC → [-1, 1] NCHW float32 (the original's ``x / 127.5 - 1``)."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


def to_unit(pixels: np.ndarray) -> np.ndarray:
    """Pixels of any depth → float32 in [-1, 1], by their bit depth: uint8 as the original
    (``x / 127.5 - 1``), uint16 ``x / 32767.5 - 1`` (0 and 65535 are -1 and 1), float ``2x - 1``
    (floats are stored in [0, 1])."""
    if pixels.dtype == np.uint8:
        return pixels.astype(np.float32) / np.float32(127.5) - 1
    if pixels.dtype == np.uint16:
        return pixels.astype(np.float32) / np.float32(32767.5) - 1
    return pixels.astype(np.float32) * 2 - 1
