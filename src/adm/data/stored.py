"""Images as stored: their channel count and bit depth kept (what training on your own data reads).

What is read, and as what (``read_stored``: ``[H, W, C]`` uint8, uint16 or float32):

* PNG, TIFF, JPEG, ... through PIL: grayscale (``L``, 1-bit) → 1 channel, ``LA`` → 2, ``RGB`` → 3,
  ``RGBA`` → 4, 8 bits each; 16-bit grayscale (``I;16``, or ``I`` with values up to 65535) → 1
  channel uint16; 32-bit float TIFF (``F``) → 1 channel float32. Palette, CMYK and YCbCr images
  are read as RGB, as PIL converts them.
* ``.npy``: ``[H, W]`` or ``[H, W, C]`` with any C, uint8, uint16 or float (16, 32 or 64 bits).
* float pixels must lie in [0, 1]; values map to the networks' [-1, 1] by bit depth
  (``adm.data.pixels.to_unit``).

Refused, with the reason: multi-page TIFFs (PIL reads one page: save a stack as an ``.npy``), and
16-bit colour PNGs/TIFFs with a transparency channel read by PIL as 8-bit RGBA (LA at 16 bits),
whose channels PIL changes. PIL reads 16-bit RGB and RGBA files at 8 bits (their high bytes):
they are read so, and an ``.npy`` keeps all 16 bits.

Where 8-bit images are read (evaluation, references), deeper ones are scaled by their depth
(``as_8bit``), as a model trained on them writes its samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from adm.core.errors import UsageError

DEPTHS = ("uint8", "uint16", "float32")
"""What pixels are held as after reading (floats of any width become float32)."""

_GREY_16 = ("I;16", "I;16B", "I;16L", "I;16N")
# PIL mode -> (channels, the mode read as, dtype)
_MODES: dict[str, tuple[int, str, str]] = {
    "1": (1, "L", "uint8"), "L": (1, "L", "uint8"), "LA": (2, "LA", "uint8"), "La": (2, "LA", "uint8"),
    "RGB": (3, "RGB", "uint8"), "RGBX": (3, "RGB", "uint8"), "P": (3, "RGB", "uint8"), "CMYK": (3, "RGB", "uint8"),
    "YCbCr": (3, "RGB", "uint8"), "LAB": (3, "RGB", "uint8"), "HSV": (3, "RGB", "uint8"),
    "RGBA": (4, "RGBA", "uint8"), "RGBa": (4, "RGBA", "uint8"), "PA": (4, "RGBA", "uint8"),
    **{mode: (1, mode, "uint16") for mode in _GREY_16}, "I": (1, "I", "uint16"), "F": (1, "F", "float32"),
}
NPY_ADVICE = "save the pixels as an .npy array [H, W, C] (np.save) instead"


@dataclass(frozen=True)
class Layout:
    """How an image is stored: its channel count and the dtype its pixels are read as."""

    channels: int
    dtype: str  # one of DEPTHS

    def describe(self) -> str:
        depth = {"uint8": "8-bit", "uint16": "16-bit", "float32": "float"}[self.dtype]
        return f"{self.channels} channel{'' if self.channels == 1 else 's'}, {depth}"


RGB8 = Layout(3, "uint8")


def probe(path: str | Path) -> tuple[Layout, int, int]:
    """``(layout, height, width)`` of an image file, from its header (no pixels decoded)."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        shape, dtype = _npy_header(path)
        return Layout(1 if len(shape) == 2 else shape[2], _npy_depth(dtype, path)), shape[0], shape[1]
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return _pil_layout(image, path)[0], image.size[1], image.size[0]
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UsageError(f"cannot read image {path}: {err}") from None


def read_stored(path: str | Path) -> np.ndarray:
    """An image file as ``[H, W, C]`` pixels of its own depth (uint8, uint16 or float32 in [0, 1])."""
    path = Path(path)
    if path.suffix.lower() == ".npy":
        return _read_npy(path)
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            layout, mode = _pil_layout(image, path)
            array = np.asarray(image if image.mode == mode else image.convert(mode))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UsageError(f"cannot read image {path}: {err}") from None
    if mode == "I":  # 32-bit integers: 16-bit grayscale as some PIL versions and TIFFs hold it
        if array.size and (array.min() < 0 or array.max() > 65535):
            raise UsageError(f"{path} holds 32-bit integer pixels outside 0..65535", NPY_ADVICE)
        array = array.astype(np.uint16)
    array = array.astype(layout.dtype, copy=False)
    if layout.dtype == "float32":
        check_unit_range(array, str(path))
    return array.reshape(*array.shape[:2], layout.channels)


def _pil_layout(image, path: Path) -> tuple[Layout, str]:
    """(layout, the PIL mode to read it as); refuses what PIL would read wrongly."""
    if getattr(image, "n_frames", 1) > 1 and image.format == "TIFF":
        raise UsageError(f"{path} is a TIFF of {image.n_frames} pages; adm reads single-page images", NPY_ADVICE)
    if image.mode not in _MODES:
        raise UsageError(f"{path} has PIL mode {image.mode!r}, which adm does not read", NPY_ADVICE)
    if image.mode == "RGBA" and _rawmode(image).startswith("LA;16"):
        raise UsageError(f"{path} is a 16-bit grayscale + alpha PNG, which PIL reads as 8-bit RGBA", NPY_ADVICE)
    channels, mode, dtype = _MODES[image.mode]
    return Layout(channels, dtype), mode


def _rawmode(image) -> str:
    """How the decoder unpacks the file's pixels (PNG: e.g. ``LA;16B``), '' when unknown."""
    try:
        args = image.tile[0][3]
    except (IndexError, TypeError, AttributeError):
        return ""
    return args if isinstance(args, str) else str(args[0]) if isinstance(args, tuple) and args else ""


def as_8bit(pixels: np.ndarray) -> np.ndarray:
    """Pixels of any depth as uint8, by bit depth: what a model trained on them writes as its
    samples' 8 bits (``(x + 1) * 127.5`` truncated, x the pixels in [-1, 1])."""
    if pixels.dtype == np.uint8:
        return pixels
    scale = 255 / 65535 if pixels.dtype == np.uint16 else 255
    return np.floor(pixels.astype(np.float64) * scale).clip(0, 255).astype(np.uint8)


DEEP_MODES = frozenset({*_GREY_16, "I", "F"})
"""PIL modes of more than 8 bits, which PIL's own conversion to RGB clips instead of scaling."""


def check_unit_range(array: np.ndarray, where: str) -> None:
    """Float pixels must lie in [0, 1] (what adm maps to [-1, 1]); say how to fix others."""
    if not array.size:
        return
    low, high = float(np.min(array)), float(np.max(array))
    if not (np.isfinite(low) and np.isfinite(high)):
        raise UsageError(f"{where} holds NaN or infinite pixel values")
    if low < 0 or high > 1:
        fix = "rescale [-1, 1] data with (x + 1) / 2" if low >= -1 and high <= 1 else "rescale it to [0, 1]"
        raise UsageError(f"{where} holds float pixels in [{low:g}, {high:g}]; adm reads floats in [0, 1]", fix)


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        with open(path, "rb") as f:
            version = npy_format.read_magic(f)
            read = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            shape, fortran, dtype = read(f)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read array {path}: {err}") from None
    if len(shape) not in (2, 3):
        raise UsageError(f"{path} has shape {list(shape)}; an image array is [H, W] or [H, W, C]")
    return shape, dtype


def _npy_depth(dtype: np.dtype, path: Path | str) -> str:
    """The depth an array's pixels are read as: uint8, uint16 or float (as float32)."""
    if dtype.kind == "u" and dtype.itemsize in (1, 2):
        return f"uint{8 * dtype.itemsize}"
    if dtype.kind == "f" and dtype.itemsize <= 8:
        return "float32"
    raise UsageError(f"{path} holds {dtype} pixels; adm reads uint8, uint16 or float in [0, 1]",
                     "convert it, e.g. with arr.astype(np.uint16)")


def _read_npy(path: Path) -> np.ndarray:
    _npy_header(path)  # shape checked before anything is loaded
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UsageError(f"cannot read array {path}: {err}") from None
    depth = _npy_depth(array.dtype, path)
    array = np.ascontiguousarray(array, dtype=depth)
    if depth == "float32":
        check_unit_range(array, str(path))
    return array if array.ndim == 3 else array[..., None]


def array_depth(dtype: np.dtype, where: str) -> str:
    """The depth of an npz's pixels (``_npy_depth``), named after ``where`` in errors."""
    return _npy_depth(np.dtype(dtype), where)
