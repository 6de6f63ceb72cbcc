"""Reading image collections: an ``.npz`` in the original's format, or a folder of image files.

Both are untrusted input: npz files are opened with ``allow_pickle=False``, images through PIL,
and every failure is a one-line ``UsageError``. ``arr_0`` of an npz is streamed from the zip
member in batches (50,000 images at 256² are ~10 GB; the original evaluator streams them too).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from adm.core.errors import UsageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")


def list_images(folder: str | Path) -> list[Path]:
    """Image files below ``folder`` (recursive, sorted, by extension, case-insensitive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 ``[H, W, 3]`` RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise UsageError(f"cannot read image {path}: {err}") from None


def _npz_member(archive: zipfile.ZipFile, key: str, path: Path) -> zipfile.ZipInfo:
    try:
        return archive.getinfo(f"{key}.npy")
    except KeyError:
        keys = [n.removesuffix(".npy") for n in archive.namelist()]
        raise UsageError(f"{path} has no array {key!r} (it has: {', '.join(keys) or 'nothing'})") from None


def _read_header(stream, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(stream)
        else:
            shape, fortran, dtype = npy_format.read_array_header_2_0(stream)
    except ValueError as err:
        raise UsageError(f"{path} is not a valid npz ({err})") from None
    if dtype.hasobject:
        raise UsageError(f"{path} holds Python objects; adm reads numeric arrays only")
    return shape, fortran, dtype


def npz_keys(path: str | Path) -> list[str]:
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            return [n.removesuffix(".npy") for n in archive.namelist() if n.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as err:
        raise UsageError(f"{path} is not a readable npz file ({err})") from None


def load_npz_array(path: str | Path, key: str) -> np.ndarray:
    """One whole array of an npz, without pickles."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if key not in data.files:
                raise UsageError(f"{path} has no array {key!r} (it has: {', '.join(data.files) or 'nothing'})")
            return data[key]
    except (ValueError, OSError, zipfile.BadZipFile) as err:
        raise UsageError(f"{path} is not a readable npz file ({err})") from None


def npz_labels(path: str | Path) -> np.ndarray | None:
    """``arr_1`` of an npz as flat int64 class labels; None for a folder or an npz without labels."""
    path = Path(path)
    if path.is_dir() or path.suffix.lower() in IMAGE_EXTENSIONS or "arr_1" not in npz_keys(path):
        return None
    return load_npz_array(path, "arr_1").astype(np.int64).reshape(-1)


@dataclass(frozen=True)
class ImageCollection:
    """N uint8 RGB images, from an npz (``arr_0``, NHWC) or a folder: the one image-source type.

    Read in batches (``batches``: streamed, what sampling, editing and evaluation do) or one at a
    time (``read``: random access, what training's shuffled stream does; an npz's array is then
    loaded once). A folder's size is its first image's.
    """

    path: Path
    count: int
    height: int
    width: int
    files: tuple[Path, ...] = ()
    crop: int | None = None  # resize + centre-crop every image to crop x crop (as `adm train` does)

    @property
    def is_npz(self) -> bool:
        return not self.files

    @cached_property
    def array(self) -> np.ndarray:
        """An npz's ``arr_0`` in memory (loaded on first random access)."""
        return load_npz_array(self.path, "arr_0")

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as uint8 ``[H, W, 3]``, as stored (a UsageError when it cannot be decoded)."""
        return self.array[index] if self.is_npz else read_image(self.files[index])

    def name(self, index: int) -> str:
        return str(self.files[index]) if self.files else f"{self.path}[{index}]"

    def cropped(self, size: int) -> ImageCollection:
        """The same images, each resized and centre-cropped to ``size`` x ``size`` as read."""
        from dataclasses import replace

        return replace(self, height=size, width=size, crop=size)

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """uint8 ``[B, H, W, 3]`` batches of images ``start..stop``."""
        stop = self.count if stop is None else min(stop, self.count)
        if self.is_npz:
            for batch in _npz_batches(self.path, batch_size, start, stop):
                yield self._cropped(list(batch)) if self.crop and batch.shape[1:3] != (self.crop, self.crop) else batch
            return
        for begin in range(start, stop, batch_size):
            images = [read_image(p) for p in self.files[begin : min(begin + batch_size, stop)]]
            if self.crop:
                yield self._cropped(images)
                continue
            for p, image in zip(self.files[begin:], images, strict=False):
                if image.shape[:2] != (self.height, self.width):
                    raise UsageError(f"{p} is {image.shape[1]}x{image.shape[0]}, the others {self.width}x{self.height}")
            yield np.stack(images)

    def _cropped(self, images: list[np.ndarray]) -> np.ndarray:
        from adm.data.crops import center_crop

        return np.stack([center_crop(np.ascontiguousarray(image), self.crop) for image in images])


def _npz_batches(path: Path, batch_size: int, start: int, stop: int) -> Iterator[np.ndarray]:
    with zipfile.ZipFile(path) as archive, archive.open(_npz_member(archive, "arr_0", path)) as stream:
        shape, fortran, dtype = _read_header(stream, path)
        per_image = int(np.prod(shape[1:])) * dtype.itemsize
        # a forward seek: direct for stored members, chunked decompression for deflated ones
        stream.seek(start * per_image, io.SEEK_CUR)
        for begin in range(start, stop, batch_size):
            n = min(batch_size, stop - begin)
            raw = stream.read(n * per_image)
            if len(raw) != n * per_image:
                raise UsageError(f"{path} is truncated (arr_0 ends before image {begin + len(raw) // per_image})")
            yield np.frombuffer(raw, dtype=dtype).reshape((n, *shape[1:]))


def open_images(path: str | Path, *, name: str = "images") -> ImageCollection:
    """Open an npz (``arr_0`` uint8 ``[N, H, W, 3]``), a folder of same-sized images, or one image."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{name} {path} does not exist")
    if path.suffix.lower() in IMAGE_EXTENSIONS:  # a single image
        first = read_image(path)
        return ImageCollection(path, 1, first.shape[0], first.shape[1], (path,))
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise UsageError(f"{path} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        first = read_image(files[0])
        return ImageCollection(path, len(files), first.shape[0], first.shape[1], tuple(files))
    try:
        with zipfile.ZipFile(path) as archive, archive.open(_npz_member(archive, "arr_0", path)) as stream:
            shape, fortran, dtype = _read_header(stream, path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UsageError(f"{path} is not a readable npz file ({err})") from None
    check_nhwc_uint8(shape, dtype, path)
    if fortran:
        raise UsageError(f"{path}: arr_0 is stored in Fortran order; save it with np.savez from a C-ordered array")
    return ImageCollection(path, shape[0], shape[1], shape[2])


def check_nhwc_uint8(shape: tuple[int, ...], dtype: np.dtype, path: Path) -> None:
    """The original's sample format: uint8 ``[N, H, W, 3]``; say what is wrong otherwise."""
    if len(shape) != 4:
        raise UsageError(f"{path}: arr_0 has shape {list(shape)}; expected [N, H, W, 3] images")
    if shape[-1] != 3:
        if shape[1] == 3:
            raise UsageError(f"{path}: arr_0 looks like NCHW {list(shape)}; expected NHWC [N, H, W, 3]", "transpose with arr.transpose(0, 2, 3, 1)")
        raise UsageError(f"{path}: arr_0 has {shape[-1]} channels; expected RGB [N, H, W, 3]")
    if dtype != np.uint8:
        raise UsageError(
            f"{path}: arr_0 is {dtype}, expected uint8 in [0, 255]",
            "convert floats in [-1, 1] with ((x + 1) * 127.5).clip(0, 255).astype(np.uint8)",
        )
