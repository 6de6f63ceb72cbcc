"""Running an image collection through Inception in batches: kept features and streaming moments.

Images are read in a background thread (one batch ahead) while the network runs. Under torchrun
each rank takes a contiguous share of the images (rank r: ``[r·N/W, (r+1)·N/W)``) and the shares
are gathered in rank order, i.e. in image order.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from adm.core.distributed import Dist
from adm.core.progress import ProgressFn, report
from adm.data.images import ImageCollection
from adm.evaluation.inception import NUM_LOGITS, POOL_DIM, SPATIAL_DIM, InceptionFeatures
from adm.evaluation.stats import Moments


@dataclass
class Features:
    """What one pass over a collection produced (only the parts that were asked for)."""

    count: int
    pool: np.ndarray | None = None  # [N, 2048] float32
    logits: np.ndarray | None = None  # [N, 1008] float32
    pool_moments: Moments | None = None  # over pool3
    spatial_moments: Moments | None = None  # over the 2023 sFID features


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def prefetch(iterator: Iterator, depth: int = 2) -> Iterator:
    """Yield ``iterator``'s items, produced in a background thread ``depth`` items ahead."""
    items: queue.Queue = queue.Queue(depth)
    stop = threading.Event()
    finished = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                items.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for item in iterator:
                if not put(item):
                    return
            put(finished)
        except BaseException as err:  # noqa: BLE001 - handed to the consumer, re-raised there
            put(_Raised(err))
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=work, name="adm-image-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = items.get()
            if item is finished:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()


def shard(count: int, dist: Dist) -> tuple[int, int]:
    """The contiguous ``[start, stop)`` share of ``count`` items that this rank processes."""
    return count * dist.rank // dist.world_size, count * (dist.rank + 1) // dist.world_size


def extract(
    images: ImageCollection,
    model: InceptionFeatures,
    *,
    start: int = 0,
    stop: int | None = None,
    batch_size: int = 64,
    keep_pool: bool = True,
    keep_logits: bool = False,
    moments: bool = True,
    device: torch.device | str = "cpu",
    on_progress: ProgressFn | None = None,
    task: str = "features",
) -> Features:
    """Features of images ``start..stop`` of ``images`` (one process)."""
    stop = images.count if stop is None else min(stop, images.count)
    device = torch.device(device)
    total = max(stop - start, 0)
    pools, logits = [], []
    pool_moments = Moments.zeros(POOL_DIM, device) if moments else None
    spatial_moments = Moments.zeros(SPATIAL_DIM, device) if moments else None
    done = 0
    report(on_progress, task, 0, total, unit="img")
    for batch in prefetch(images.batches(batch_size, start, stop)):
        x = torch.from_numpy(np.array(batch, dtype=np.uint8)).to(device).permute(0, 3, 1, 2)
        pool, spatial, logit = model(x.contiguous())
        if keep_pool:
            pools.append(pool.cpu().numpy())
        if keep_logits:
            logits.append(logit.cpu().numpy())
        if moments:
            pool_moments.update(pool)
            spatial_moments.update(spatial)
        done += len(batch)
        report(on_progress, task, done, total, unit="img")
    return Features(
        done,
        _join(pools, POOL_DIM) if keep_pool else None,
        _join(logits, NUM_LOGITS) if keep_logits else None,
        pool_moments,
        spatial_moments,
    )


def _join(chunks: list[np.ndarray], dim: int) -> np.ndarray:
    return np.concatenate(chunks) if chunks else np.zeros((0, dim), np.float32)


def gather(part: Features, dist: Dist) -> Features:
    """Every rank's share joined in rank (= image) order; moments summed. A world of one: as is."""
    if not dist.active:
        return part
    moved = Features(
        part.count,
        part.pool,
        part.logits,
        part.pool_moments.to("cpu") if part.pool_moments is not None else None,
        part.spatial_moments.to("cpu") if part.spatial_moments is not None else None,
    )
    parts: list[Features] = dist.all_gather_objects(moved)
    out = Features(sum(p.count for p in parts))
    if parts[0].pool is not None:
        out.pool = np.concatenate([p.pool for p in parts])
    if parts[0].logits is not None:
        out.logits = np.concatenate([p.logits for p in parts])
    if parts[0].pool_moments is not None:
        out.pool_moments = Moments.zeros(POOL_DIM)
        out.spatial_moments = Moments.zeros(SPATIAL_DIM)
        for p in parts:
            out.pool_moments.merge(p.pool_moments)
            out.spatial_moments.merge(p.spatial_moments)
    return out


def extract_all(
    images: ImageCollection,
    model: InceptionFeatures,
    dist: Dist,
    *,
    batch_size: int = 64,
    keep_pool: bool = True,
    keep_logits: bool = False,
    moments: bool = True,
    on_progress: ProgressFn | None = None,
    task: str = "features",
) -> Features:
    """Features of every image, split across the ranks of ``dist`` and gathered on all of them."""
    start, stop = shard(images.count, dist)
    part = extract(
        images,
        model,
        start=start,
        stop=stop,
        batch_size=batch_size,
        keep_pool=keep_pool,
        keep_logits=keep_logits,
        moments=moments,
        device=dist.device,
        on_progress=on_progress,
        task=task,
    )
    return gather(part, dist)
