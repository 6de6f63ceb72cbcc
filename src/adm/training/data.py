"""Training data: image folders and npz files, the original's crops, and a rank-independent order.

Sources
    A folder is searched recursively for image files (PNG, TIFF, JPEG, ... and ``.npy`` arrays);
    an npz holds ``arr_0`` (``[N, H, W]`` or ``[N, H, W, C]``) and, for labels, ``arr_1`` (``[N]``
    integers). Images keep their channels and bit depth (``adm.data.stored``: 8 or 16 bits, or
    float in [0, 1]; a folder's images must share them, except that a folder of RGB images reads
    every file as RGB, as the original did), and map to [-1, 1] by their bit depth. The network's
    channel count is the data's (``open_training_data``). Class names come from the file-name prefix before
    the first ``_`` (the original's rule: ImageNet's ``n01440764_10026.JPEG``) or from the top-level
    sub-folder (``root/cat/x.png``); ``auto`` picks sub-folders when every image sits in one.
    Indices are positions in the sorted list of names, as the original assigns them.

Order
    The run consumes one endless stream of sample positions ``p = 0, 1, 2, ...``; position ``p``
    is image ``perm_e[p mod N]`` of epoch ``e = p div N`` (a seeded permutation per epoch). Step
    ``s`` takes positions ``[s·B, (s+1)·B)`` of the GLOBAL batch B, and rank r the r-th contiguous
    slice of them. Crops, flips, noise and timesteps are seeded by ``p`` too
    (``adm.training.seeding``), so the union of the ranks' batches is exactly what one process
    would see, and the position is recomputed from the step on resume (any world size).

Broken files
    An unreadable image is skipped: the next image (in sorted order) takes its place, and the
    loader reports it so the loop can count it. Nothing crashes mid-epoch; only a source with no
    readable image at all is an error.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from adm.core.errors import UsageError
from adm.data.crops import center_crop, random_crop
from adm.data.images import (
    ImageCollection,
    folder_images,
    list_images,
    load_npz_array,
    npz_keys,
    open_images,
)
from adm.data.pixels import to_unit
from adm.spec.flags import ClassifierFlags, ModelFlags, SuperResFlags, in_channels, in_channels_flag
from adm.spec.flags import image_size as network_size
from adm.training.config import LabelSource
from adm.training.seeding import derive_seed

# --------------------------------------------------------------------------------------------
# Sources


@dataclass(frozen=True, eq=False)
class LabelledImages:
    """The training images (an ``ImageCollection``) and, when the network needs them, their classes."""

    images: ImageCollection
    labels: np.ndarray | None = None  # int64 [N], or None when unlabelled
    class_names: tuple[str, ...] = ()

    @property
    def count(self) -> int:
        return self.images.count

    @property
    def path(self) -> Path:
        return self.images.path

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.images.channels

    def label(self, index: int) -> int:
        return -1 if self.labels is None else int(self.labels[index])


def open_source(
    path: str | Path,
    *,
    image_size: int,
    need_labels: bool,
    label_source: LabelSource = "auto",
    class_names: Sequence[str] | None = None,
    what: str = "--data",
) -> LabelledImages:
    """Open and check a training source; every problem is a one-line UsageError.

    ``class_names`` fixes the name → index map (a validation set must use the training set's).
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{what} {path} does not exist")
    if path.is_dir():
        source = _open_folder(path, need_labels, label_source, class_names, what)
    else:
        source = _open_npz(path, need_labels, class_names, what)
    _check_size(source, image_size, what)
    return source


Network = TypeVar("Network", ModelFlags, SuperResFlags, ClassifierFlags)


def open_training_data(flags: Network, data: str | Path, label_source: LabelSource, *, init: str | None) -> tuple[Network, LabelledImages]:
    """Open ``--data`` for a network, and settle the network's class count with it.

    A class-conditional model (``class_cond``) or a classifier needs one output per class. When
    the flags say how many (``--num_classes`` / ``--classifier_num_classes`` set explicitly:
    ``model_fields_set``), data with more classes is refused; when they do not, the count is the
    data's, so ten classes do not silently train a 1000-way network (the original's hard-coded
    default, with a loss near ln 1000). With ``init`` the network must load those weights, so
    the flags' count is kept (and checked) as well. The channel count is settled the same way,
    for every network (``with_data_channels``).
    """
    is_classifier = isinstance(flags, ClassifierFlags)
    need_labels = is_classifier or flags.class_cond
    source = open_source(data, image_size=network_size(flags), need_labels=need_labels, label_source=label_source)
    flags = with_data_channels(flags, source)
    if not need_labels:
        return flags, source
    field = "classifier_num_classes" if is_classifier else "num_classes"
    have, found = getattr(flags, field), source.num_classes
    if field not in flags.model_fields_set and not init:
        return flags.replace(**{field: found}), source
    if found > have:
        what = f"classifier has {have} outputs" if is_classifier else f"model has {have}"
        raise UsageError(
            f"--data has {found} classes but the {what} (--{field})",
            f"raise --{field} in the flags" + ("" if init else ", or leave it out to take the count from the data"),
        )
    return flags, source


def with_data_channels(flags: Network, source: LabelledImages) -> Network:
    """``flags`` with the data's channel count: taken from the data when the flags do not set it
    (``model_fields_set``), a one-line error when they set another. With 3 channels (RGB) the
    flags stay as they are, so an RGB run's flags and network are exactly the original's."""
    name, have, found = in_channels_flag(flags), in_channels(flags), source.channels
    if have == found:
        return flags
    if name not in flags.model_fields_set:
        return flags.replace(**{name: found})
    where = source.images.name(0) if not source.images.is_npz else str(source.path)
    raise UsageError(
        f"--data has {found}-channel images ({where}: {source.images.layout.describe()}) but the flags say --{name} {have}",
        f"leave --{name} out to take it from the data, or convert the images to {have} channels",
    )


def _open_folder(path: Path, need_labels: bool, label_source: LabelSource, known: Sequence[str] | None, what: str) -> LabelledImages:
    files = tuple(list_images(path))
    if not files:
        raise UsageError(f"{what} {path} contains no images (.png, .jpg, .jpeg, .webp, .tif, .npy, ...)")
    images = folder_images(path, files, stored=True)
    if not need_labels:
        return LabelledImages(images)
    relative = [f.relative_to(path) for f in files]
    if label_source == "auto":
        label_source = "folder" if all(len(r.parts) > 1 for r in relative) else "prefix"
    if label_source == "folder":
        loose = [r for r in relative if len(r.parts) < 2]
        if loose:
            raise UsageError(
                f"{what}: {len(loose)} image(s) are not in a class sub-folder, e.g. {path / loose[0]}",
                "put each class in its own sub-folder, or use --labels prefix",
            )
        names = [r.parts[0] for r in relative]
    else:
        unlabelled = [f for f in files if "_" not in f.name]
        if unlabelled:
            raise UsageError(
                f"{what}: {len(unlabelled)} image(s) have no class prefix (CLASS_rest.ext), e.g. {unlabelled[0]}",
                "name files CLASS_xxx.png, or use --labels folder with one sub-folder per class; unlabelled data "
                "trains an unconditional model: --model-flags \"--class_cond False\"",
            )
        names = [f.name.split("_", 1)[0] for f in files]
    class_names, labels = _index_labels(names, known, what)
    return LabelledImages(images, labels, class_names)


def _index_labels(names: Sequence[str], known: Sequence[str] | None, what: str) -> tuple[tuple[str, ...], np.ndarray]:
    class_names = tuple(known) if known is not None else tuple(sorted(set(names)))
    index = {name: i for i, name in enumerate(class_names)}
    missing = sorted(set(names) - set(index))
    if missing:
        raise UsageError(f"{what} has class {missing[0]!r}, which the training data does not have")
    return class_names, np.asarray([index[n] for n in names], dtype=np.int64)


def _open_npz(path: Path, need_labels: bool, known: Sequence[str] | None, what: str) -> LabelledImages:
    keys = npz_keys(path)
    if "arr_0" not in keys:
        raise UsageError(f"{what} {path} has no arr_0 (it has: {', '.join(keys) or 'nothing'})")
    images = open_images(path, name=what, stored=True)
    if images.count == 0:
        raise UsageError(f"{what} {path} holds no images")
    images.array  # noqa: B018 - loaded once here, before data-loader workers fork
    if not need_labels:
        return LabelledImages(images)
    if "arr_1" not in keys:
        raise UsageError(f"{what} {path} has no labels (arr_1)", "save it with np.savez(path, images, labels)")
    raw = load_npz_array(path, "arr_1")
    if raw.ndim != 1 or len(raw) != images.count or raw.dtype.kind not in "iu":
        raise UsageError(f"{what} {path}: arr_1 must be {images.count} integer labels, got {raw.dtype} {list(raw.shape)}")
    if raw.min() < 0:
        raise UsageError(f"{what} {path}: arr_1 has negative labels")
    names = [str(int(v)) for v in raw]
    if known is None:
        # Integer labels keep their values as indices: class k is "k" for every k up to the largest.
        known = [str(k) for k in range(int(raw.max()) + 1)]
    class_names, labels = _index_labels(names, known, what)
    return LabelledImages(images, labels, class_names)


def _check_size(source: LabelledImages, image_size: int, what: str) -> None:
    """The first image must cover the model's size (others too small are skipped, not upsampled)."""
    height, width = source.images.height, source.images.width
    where = str(source.images.name(0) if not source.images.is_npz else source.path)
    if min(height, width) < image_size:
        raise UsageError(
            f"{what}: images are smaller than the model ({where} is {width}x{height}, the model needs {image_size}x{image_size})",
            "use larger images or a model of a smaller image size",
        )


# --------------------------------------------------------------------------------------------
# The sample stream


@dataclass(frozen=True)
class SampleOrder:
    """Position p → image index: a fresh seeded permutation of ``indices`` per epoch."""

    indices: tuple[int, ...]
    seed: int
    shuffle: bool = True

    def __len__(self) -> int:
        return len(self.indices)

    def index(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.indices))
        return self.indices[int(_permutation(len(self.indices), self.seed, epoch, self.shuffle)[offset])]


@lru_cache(maxsize=4)
def _permutation(n: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    if not shuffle:
        return np.arange(n)
    generator = torch.Generator().manual_seed(derive_seed(seed, "epoch", epoch))
    return torch.randperm(n, generator=generator).numpy()


@dataclass
class Augment:
    size: int
    random_crop: bool = False
    random_flip: bool = False


class StreamDataset(torch.utils.data.Dataset):
    """Map-style dataset whose keys are stream positions; item = (image, label, position, broken)."""

    def __init__(self, source: LabelledImages, order: SampleOrder, augment: Augment, seed: int):
        self.source, self.order, self.augment, self.seed = source, order, augment, seed

    def __len__(self) -> int:  # positions are unbounded; this is one epoch
        return len(self.order)

    def __getitem__(self, position: int):
        index = self.order.index(position)
        broken: list[str] = []
        for attempt in range(self.source.count):
            candidate = (index + attempt) % self.source.count
            try:
                array = self._load(candidate, position)
            except Exception as err:  # any decoding failure (PIL raises a zoo of types): skip the file
                broken.append(f"{self.source.images.name(candidate)}: {getattr(err, 'message', None) or err}")
                continue
            pixels = np.array(array, copy=True) if array.dtype == np.uint8 else to_unit(array)  # see to_model_input
            return torch.from_numpy(pixels), self.source.label(candidate), position, broken
        raise UsageError(f"no readable image in {self.source.path} ({broken[0]})")

    def _load(self, index: int, position: int) -> np.ndarray:
        array = self.source.images.read(index)
        size = self.augment.size
        if min(array.shape[:2]) < size:
            raise UsageError(f"{array.shape[1]}x{array.shape[0]} is smaller than {size}x{size}")
        generator = torch.Generator().manual_seed(derive_seed(self.seed, "augment", position))
        array = random_crop(array, size, generator) if self.augment.random_crop else center_crop(array, size)
        if self.augment.random_flip and bool(torch.rand((), generator=generator) < 0.5):
            array = array[:, ::-1]
        return array


@dataclass
class Batch:
    """A rank's batch: NHWC images (uint8, converted on the device; deeper ones already in
    [-1, 1] as float32), labels, stream positions."""

    images: torch.Tensor
    labels: torch.Tensor
    positions: list[int]
    broken: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.positions)


def collate(items) -> Batch:
    images, labels, positions, broken = zip(*items, strict=True)
    return Batch(
        images=torch.stack(images),
        labels=torch.as_tensor(labels, dtype=torch.int64),
        positions=list(positions),
        broken=[b for group in broken for b in group],
    )


def to_model_input(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """NHWC → float32 NCHW in [-1, 1] on ``device``: uint8 by the original's ``x / 127.5 - 1``
    there (a quarter of the bytes to move), deeper pixels as the loader mapped them (``to_unit``)."""
    x = images.to(device, non_blocking=True).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1 if images.dtype == torch.uint8 else x


@dataclass(frozen=True)
class StreamPlan:
    """Which positions each rank takes at each step (the data position is derived from the step).

    ``base_step``/``base_position`` anchor the stream: step s starts at
    ``base_position + (s - base_step) * batch_size``; both are 0 for a fresh run and are stored in
    the trainer state so that a resumed run may even change the batch size.
    """

    batch_size: int
    world_size: int
    rank: int
    base_step: int = 0
    base_position: int = 0

    @property
    def local(self) -> int:
        return self.batch_size // self.world_size

    def step_start(self, step: int) -> int:
        return self.base_position + (step - self.base_step) * self.batch_size

    def positions(self, step: int) -> list[int]:
        start = self.step_start(step) + self.rank * self.local
        return list(range(start, start + self.local))


class _StepBatches(torch.utils.data.Sampler):
    def __init__(self, plan: StreamPlan, start: int, stop: int):
        self.plan, self.start, self.stop = plan, start, stop

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.stop):
            yield self.plan.positions(step)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)


def _quiet_worker(_: int) -> None:
    # Ctrl-C goes to the whole process group; the main process decides what to do with it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def stream_batches(
    dataset: StreamDataset,
    plan: StreamPlan,
    start: int,
    stop: int,
    *,
    workers: int,
    pin_memory: bool = False,
) -> Iterator[Batch]:
    """The rank's batch for every step in ``[start, stop)``, in order."""
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_sampler=_StepBatches(plan, start, stop),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        worker_init_fn=_quiet_worker if workers else None,
        prefetch_factor=4 if workers else None,
        generator=torch.Generator().manual_seed(0),  # keeps the global RNG (dropout) untouched
    )
    return iter(loader)


def fixed_batches(dataset: StreamDataset, positions: Sequence[int], batch_size: int) -> Iterator[Batch]:
    """Batches of the given positions, loaded in this process (validation)."""
    for begin in range(0, len(positions), batch_size):
        yield collate([dataset[p] for p in positions[begin : begin + batch_size]])


def split_indices(count: int, fraction: float, seed: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(train, val) index sets: a seeded ``fraction`` of ``range(count)`` held out for validation."""
    if fraction <= 0:
        return tuple(range(count)), ()
    n_val = max(1, round(count * fraction))
    if n_val >= count:
        raise UsageError(f"--val-fraction {fraction} leaves no training images out of {count}")
    perm = torch.randperm(count, generator=torch.Generator().manual_seed(derive_seed(seed, "split"))).tolist()
    return tuple(sorted(perm[n_val:])), tuple(sorted(perm[:n_val]))

