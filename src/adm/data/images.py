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
from adm.data.stored import (
    DEEP_MODES,
    RGB8,
    Layout,
    array_depth,
    as_8bit,
    check_unit_range,
    probe,
    read_stored,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".npy")


def list_images(folder: str | Path) -> list[Path]:
    """Image files below ``folder`` (recursive, sorted, by extension, case-insensitive)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def read_image(path: str | Path) -> np.ndarray:
    """An image file as uint8 ``[H, W, 3]`` RGB: PIL's conversion, except that 16-bit and float
    grayscale images (and ``.npy`` arrays of 1 or 3 channels) are scaled to 8 bits by their depth
    (``as_8bit``) where PIL would clip them."""
    from PIL import Image, UnidentifiedImageError

    deep = Path(path).suffix.lower() == ".npy"
    if not deep:
        try:
            with Image.open(path) as image:
                deep = image.mode in DEEP_MODES
                if not deep:
                    return np.asarray(image.convert("RGB"), dtype=np.uint8)
        except (UnidentifiedImageError, OSError, ValueError) as err:
            raise UsageError(f"cannot read image {path}: {err}") from None
    array = read_stored(path)
    if array.shape[2] not in (1, 3):
        raise UsageError(f"{path} is not a grayscale or RGB image ({Layout(array.shape[2], str(array.dtype)).describe()})")
    array = as_8bit(array)
    return np.repeat(array, 3, axis=-1) if array.shape[2] == 1 else array


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
    """N images, from an npz (``arr_0``) or a folder: the one image-source type.

    Read in batches (``batches``: streamed, what sampling, editing and evaluation do) or one at a
    time (``read``: random access, what training's shuffled stream does; an npz's array is then
    loaded once), always as ``[H, W, C]`` pixels of ``dtype``. A folder's size and layout are its
    first image's. A folder is read as 8-bit RGB (PIL converts every file, as the original did)
    unless it is ``stored``: then every file keeps its channels and bit depth
    (``adm.data.stored``), and all must share them.
    """

    path: Path
    count: int
    height: int
    width: int
    files: tuple[Path, ...] = ()
    crop: int | None = None  # resize + centre-crop every image to crop x crop (as `adm train` does)
    channels: int = 3
    dtype: str = "uint8"  # uint8, uint16 or float32 (in [0, 1])
    stored: bool = False  # a folder's files read as stored, not converted to RGB
    replicate: bool = False  # one channel shown as RGB (the channel three times): ``as_rgb``

    @property
    def is_npz(self) -> bool:
        return not self.files

    @property
    def layout(self) -> Layout:
        return Layout(self.channels, self.dtype)

    @cached_property
    def array(self) -> np.ndarray:
        """An npz's ``arr_0`` in memory as ``[N, H, W, C]`` (loaded on first random access)."""
        return self._pixels(load_npz_array(self.path, "arr_0"), str(self.path))

    def _pixels(self, raw: np.ndarray, where: str) -> np.ndarray:
        """npz pixels as ``[..., H, W, C]`` of ``dtype`` (floats checked to lie in [0, 1])."""
        if raw.ndim == 3:  # NHW: one channel
            raw = raw[..., None]
        raw = raw.astype(self.dtype, copy=False)  # float64, big-endian uint16, ... as read
        if self.dtype == "float32":
            check_unit_range(raw, where)
        return raw

    def read(self, index: int) -> np.ndarray:
        """Image ``index`` as ``[H, W, C]``, as stored (a UsageError when it cannot be decoded)."""
        image = self.array[index] if self.is_npz else self._read_file(self.files[index])
        return np.repeat(image, 3, axis=-1) if self.replicate else image

    def _read_file(self, path: Path) -> np.ndarray:
        if not self.stored:
            return read_image(path)
        image = read_stored(path)
        found = Layout(image.shape[2], str(image.dtype))
        if found != self.layout:
            raise mixed_layouts(self.files[0], self.layout, path, found)
        return image

    def name(self, index: int) -> str:
        return str(self.files[index]) if self.files else f"{self.path}[{index}]"

    def cropped(self, size: int) -> ImageCollection:
        """The same images, each resized and centre-cropped to ``size`` x ``size`` as read."""
        from dataclasses import replace

        return replace(self, height=size, width=size, crop=size)

    def as_rgb(self) -> ImageCollection:
        """These images as 8-bit RGB: as they are when they are, a grayscale channel three times
        (R = G = B, what PIL's conversion of a grayscale file gives); anything else is refused."""
        from dataclasses import replace

        if self.layout == RGB8:
            return self
        if self.layout == Layout(1, "uint8"):
            return replace(self, channels=3, replicate=True)
        raise UsageError(f"{self.path} holds images of {self.layout.describe()}, not 8-bit grayscale or RGB")

    def batches(self, batch_size: int, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """``[B, H, W, C]`` batches of images ``start..stop``."""
        for batch in self._raw_batches(batch_size, start, stop):
            yield np.repeat(batch, 3, axis=-1) if self.replicate else batch

    def _raw_batches(self, batch_size: int, start: int, stop: int | None) -> Iterator[np.ndarray]:
        stop = self.count if stop is None else min(stop, self.count)
        if self.is_npz:
            for begin, batch in zip(range(start, stop, batch_size), _npz_batches(self.path, batch_size, start, stop),
                                    strict=True):
                batch = self._pixels(batch, f"{self.path}[{begin}:{begin + len(batch)}]")
                yield self._cropped(list(batch)) if self.crop and batch.shape[1:3] != (self.crop, self.crop) else batch
            return
        for begin in range(start, stop, batch_size):
            images = [self._read_file(p) for p in self.files[begin : min(begin + batch_size, stop)]]
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


def mixed_layouts(first: Path, layout: Layout, other: Path, found: Layout) -> UsageError:
    """The one-line error for a folder whose images differ in channels or bit depth."""
    return UsageError(f"{first} has {layout.describe()} but {other} has {found.describe()}; "
                      "the images of a folder must share their channels and bit depth",
                      "convert them to one mode (e.g. PIL's Image.convert), or keep them in separate folders")


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


def open_images(path: str | Path, *, name: str = "images", stored: bool = False) -> ImageCollection:
    """Open an npz (``arr_0``), a folder of same-sized images, or one image.

    By default (what sampling, editing and evaluation read) a folder or an image file is read as
    8-bit RGB and an npz must hold uint8 ``[N, H, W, C]`` (the original's sample format, any C).
    ``stored`` (training data) keeps every file's channels and bit depth (``adm.data.stored``)
    and takes npz arrays ``[N, H, W]`` or ``[N, H, W, C]`` of uint8, uint16 or float in [0, 1].
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{name} {path} does not exist")
    if path.suffix.lower() in IMAGE_EXTENSIONS:  # a single image
        return folder_images(path, (path,), stored=stored)
    if path.is_dir():
        files = list_images(path)
        if not files:
            raise UsageError(f"{path} contains no images ({', '.join(IMAGE_EXTENSIONS)})")
        return folder_images(path, tuple(files), stored=stored)
    try:
        with zipfile.ZipFile(path) as archive, archive.open(_npz_member(archive, "arr_0", path)) as stream:
            shape, fortran, dtype = _read_header(stream, path)
    except (zipfile.BadZipFile, OSError) as err:
        raise UsageError(f"{path} is not a readable npz file ({err})") from None
    layout = check_npz_images(shape, dtype, path, stored=stored)
    if fortran:
        raise UsageError(f"{path}: arr_0 is stored in Fortran order; save it with np.savez from a C-ordered array")
    return ImageCollection(path, shape[0], shape[1], shape[2], channels=layout.channels, dtype=layout.dtype)


def for_channels(images: ImageCollection, channels: int, name: str) -> ImageCollection:
    """Images a model of ``channels`` channels is conditioned on (edits' inputs, an upsampler's
    base): files are read as 8-bit RGB for an RGB model (as always), as stored for any other, so a
    grayscale model takes a folder of grayscale PNGs."""
    if channels == 3 or images.is_npz or images.stored:
        return images
    return open_images(images.path, name=name, stored=True)


def folder_images(path: Path, files: tuple[Path, ...], *, stored: bool) -> ImageCollection:
    """The images ``files`` (below ``path``), sized and laid out as the first.

    Stored, a folder whose first image is 8-bit RGB is still read as RGB, every file converted
    (ImageNet's few grayscale and CMYK JPEGs among colour ones, as the original read them); any
    other is read as stored, and every file's header is checked to share the first's layout.
    """
    if not stored:
        first = read_image(files[0])
        return ImageCollection(path, len(files), first.shape[0], first.shape[1], files)
    layout, height, width = probe(files[0])
    if layout == RGB8:
        return ImageCollection(path, len(files), height, width, files)
    read_stored(files[0])  # decodes: float pixels out of [0, 1] are refused before anything runs
    for other in files[1:]:
        found = probe(other)[0]
        if found != layout:
            raise mixed_layouts(files[0], layout, other, found)
    return ImageCollection(path, len(files), height, width, files, channels=layout.channels, dtype=layout.dtype,
                           stored=True)


def check_npz_images(shape: tuple[int, ...], dtype: np.dtype, path: Path, *, stored: bool = False) -> Layout:
    """The layout of an npz's ``arr_0``: uint8 ``[N, H, W, C]`` (the original's sample format, any
    C), or with ``stored`` also ``[N, H, W]`` and uint16 / float pixels; say what is wrong otherwise."""
    dims = "[N, H, W] or [N, H, W, C]" if stored else "[N, H, W, C]"
    if len(shape) not in ((3, 4) if stored else (4,)):
        raise UsageError(f"{path}: arr_0 has shape {list(shape)}; expected {dims} images")
    if len(shape) == 4 and shape[1] < shape[2] == shape[3]:
        raise UsageError(f"{path}: arr_0 looks like NCHW {list(shape)}; expected NHWC [N, H, W, C]",
                         "transpose with arr.transpose(0, 2, 3, 1)")
    channels = shape[3] if len(shape) == 4 else 1
    if stored:
        return Layout(channels, array_depth(dtype, f"{path}: arr_0"))
    if dtype != np.uint8:
        raise UsageError(
            f"{path}: arr_0 is {dtype}, expected uint8 in [0, 255]",
            "convert floats in [-1, 1] with ((x + 1) * 127.5).clip(0, 255).astype(np.uint8)",
        )
    return Layout(channels, "uint8")
