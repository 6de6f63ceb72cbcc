"""uint8 images ↔ the networks' [-1, 1] tensors, with the original scripts' exact arithmetic."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW floats → uint8 NHWC, truncating exactly as the original scripts do."""
    return ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def from_uint8(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC → [-1, 1] NCHW float32 (the original's ``x / 127.5 - 1``)."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
