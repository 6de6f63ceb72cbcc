"""torchrun / torch.distributed, reduced to what adm's jobs need (no MPI anywhere).

A job calls ``init_distributed()`` once. Under ``torchrun`` (``WORLD_SIZE`` > 1 in the
environment) it joins the process group — NCCL when the process has a GPU, gloo otherwise — and
pins the process to its local GPU; started plainly it is a world of one and nothing is
initialised. The returned ``Dist`` is passed explicitly to whatever needs rank information.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.distributed as dist

from adm.core.errors import UsageError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def all_gather_objects(self, obj):
        """Every rank's ``obj`` (picklable), in rank order."""
        if not self.active:
            return [obj]
        out = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj):
        """Rank 0's ``obj`` on every rank."""
        if not self.active:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_mean(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.active:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor /= self.world_size
        return tensor


def pick_device(requested: str | None = None, local_rank: int = 0) -> torch.device:
    """``requested`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) or the best available device."""
    if requested:
        try:
            device = torch.device(requested)
        except RuntimeError:
            raise UsageError(f"unknown device {requested!r}", "use cpu, cuda, cuda:N or mps") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"device {requested!r} requested but CUDA is not available", "use --device cpu")
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def init_distributed(device: str | None = None) -> Dist:
    """Join the torchrun process group if there is one; otherwise a world of one."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    chosen = pick_device(device, local_rank)
    if world_size <= 1:
        return Dist(device=chosen)
    if not dist.is_initialized():
        # Importing torch._dynamo (torchvision and torch-fidelity import it) after the group exists
        # takes references to the group that destroy_process_group() cannot drop: its gloo
        # threads then outlive it and the process can abort at exit ("terminate called without
        # an active exception"). Imported first, nothing holds the group but torch.distributed.
        import torch._dynamo  # noqa: F401

        backend = "nccl" if chosen.type == "cuda" else "gloo"
        if chosen.type == "cuda":
            torch.cuda.set_device(chosen)
        dist.init_process_group(backend=backend)
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=chosen)


def shutdown(d: Dist) -> None:
    if d.active and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def joined(device: str | None = None) -> Iterator[Dist]:
    """``init_distributed()`` for the length of one job; the group is left however the job ends."""
    d = init_distributed(device)
    try:
        yield d
    finally:
        shutdown(d)
