"""Reference batches in the evaluator's format, the built-in ImageNet ones, and making new ones.

An ADM reference batch is an npz holding ``mu`` [2048], ``sigma`` [2048, 2048] (pool3) and
``mu_s`` [2023], ``sigma_s`` [2023, 2023] (spatial) computed over a whole dataset, plus ``arr_0``:
up to 10,000 of its images (uint8 NHWC) for precision and recall. A plain npz of images or a folder
of images serves as a reference too; its statistics are then computed from its images.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib import format as npy_format

from adm.core.errors import UsageError
from adm.core.fileio import atomic_path
from adm.data.images import ImageCollection, load_npz_array, npz_keys, open_images
from adm.evaluation.inception import POOL_DIM, SPATIAL_DIM

STAT_KEYS = ("mu", "sigma", "mu_s", "sigma_s")
"""Images an ADM reference batch keeps for precision/recall."""

IMAGENET_REFERENCES = {
    64: "ref-imagenet64",
    128: "ref-imagenet128",
    256: "ref-imagenet256",
    512: "ref-imagenet512",
}
"""Artifact name of OpenAI's ImageNet reference batch for each sample resolution."""


@dataclass(frozen=True)
class Statistics:
    """Mean and covariance of pool3 (``mu``, ``sigma``) and of the sFID features (``mu_s``, ``sigma_s``)."""

    mu: np.ndarray
    sigma: np.ndarray
    mu_s: np.ndarray
    sigma_s: np.ndarray

    def as_dict(self) -> dict[str, np.ndarray]:
        return {"mu": self.mu, "sigma": self.sigma, "mu_s": self.mu_s, "sigma_s": self.sigma_s}


@dataclass(frozen=True)
class Reference:
    """What a reference offers: stored whole-dataset statistics and/or images."""

    path: Path
    stats: Statistics | None
    images: ImageCollection | None

    @property
    def num_images(self) -> int:
        return self.images.count if self.images is not None else 0


def reference_name(height: int, width: int) -> str:
    """The artifact name of the ImageNet reference batch for samples of this size."""
    if height != width or height not in IMAGENET_REFERENCES:
        sizes = ", ".join(str(s) for s in IMAGENET_REFERENCES)
        raise UsageError(
            f"there is no built-in reference batch for {width}x{height} samples (ImageNet: {sizes})",
            "pass --ref REF.npz, a folder of images, or make one with `adm evaluate --make-ref`",
        )
    return IMAGENET_REFERENCES[height]


def _checked_stat(path: Path, key: str, shape: tuple[int, ...]) -> np.ndarray:
    value = load_npz_array(path, key)
    if value.shape != shape or not np.issubdtype(value.dtype, np.floating):
        raise UsageError(
            f"{path}: {key} is {value.dtype} {list(value.shape)}, expected float {list(shape)}"
        )
    value = value.astype(np.float64)
    if not np.isfinite(value).all():
        raise UsageError(f"{path}: {key} holds NaN or infinite values")
    return value


def open_reference(path: str | Path) -> Reference:
    """Open a reference: an ADM reference npz, a plain npz of images, or a folder of images."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UsageError(f"reference {path} does not exist")
    if path.is_dir():
        return Reference(path, None, open_images(path, name="reference"))
    keys = npz_keys(path)
    stats = None
    present = [k for k in STAT_KEYS if k in keys]
    if present:
        missing = [k for k in STAT_KEYS if k not in keys]
        if missing:
            raise UsageError(f"{path} has {', '.join(present)} but lacks {', '.join(missing)}")
        stats = Statistics(
            _checked_stat(path, "mu", (POOL_DIM,)),
            _checked_stat(path, "sigma", (POOL_DIM, POOL_DIM)),
            _checked_stat(path, "mu_s", (SPATIAL_DIM,)),
            _checked_stat(path, "sigma_s", (SPATIAL_DIM, SPATIAL_DIM)),
        )
    images = open_images(path, name="reference") if "arr_0" in keys else None
    if stats is None and images is None:
        raise UsageError(
            f"{path} holds neither images (arr_0) nor statistics (mu, sigma, mu_s, sigma_s)",
            f"it has: {', '.join(keys) or 'nothing'}",
        )
    return Reference(path, stats, images)


def write_reference(
    path: str | Path,
    stats: Statistics,
    images: Iterable[np.ndarray] = (),
    *,
    num_images: int = 0,
    height: int = 0,
    width: int = 0,
) -> Path:
    """Write an ADM reference npz atomically; ``arr_0`` is streamed from the ``images`` batches.

    ``num_images`` images of ``height``×``width`` are expected (none: no ``arr_0``).
    """
    path = Path(path)
    with (
        atomic_path(path) as tmp,
        zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive,
    ):
        if num_images:
            _write_images(archive, images, (num_images, height, width, 3))
        for key, value in stats.as_dict().items():
            with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                value = np.ascontiguousarray(value, np.float64)
                npy_format.write_array(member, value, allow_pickle=False)
    return path


def _write_images(
    archive: zipfile.ZipFile, batches: Iterable[np.ndarray], shape: tuple[int, ...]
) -> None:
    """``arr_0.npy`` (uint8 ``shape``) written batch by batch, never whole in memory."""
    header = {
        "descr": npy_format.dtype_to_descr(np.dtype(np.uint8)),
        "fortran_order": False,
        "shape": shape,
    }
    written = 0
    with archive.open("arr_0.npy", "w", force_zip64=True) as member:
        npy_format.write_array_header_1_0(member, header)
        for batch in batches:
            take = min(len(batch), shape[0] - written)
            member.write(np.ascontiguousarray(batch[:take], dtype=np.uint8).tobytes())
            written += take
            if written == shape[0]:
                break
    if written != shape[0]:
        raise UsageError(f"expected {shape[0]} images for arr_0, got {written}")
