"""``guided_diffusion.dist_util`` without MPI, loading checkpoints safely.

The original joins an MPI job and reads checkpoints with ``torch.load`` (which runs pickled code).
Here ``setup_dist`` joins a ``torchrun`` job when there is one and otherwise makes a process
group of one (the original's scripts call ``torch.distributed`` directly, so a group must exist),
and ``load_state_dict`` is adm's weights-only loader: a ``.pt`` holding pickled objects is refused
with a one-line error instead of executed, and ``.safetensors`` files load too.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from adm.core.distributed import init_distributed
from adm.core.errors import UsageError
from adm.hub.checkpoints import load_state_dict as _load_weights

GPUS_PER_NODE = 8  # the original's constant; torchrun's LOCAL_RANK picks the GPU here
SETUP_RETRY_COUNT = 3


def _local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def setup_dist() -> None:
    """Join the ``torchrun`` job (nccl on CUDA, else gloo), or make a process group of one."""
    if dist.is_initialized():
        return
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        init_distributed("cuda" if torch.cuda.is_available() else "cpu")
        return
    # One process: an in-memory store, no port, no MPI.
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)


def dev() -> torch.device:
    """This rank's device: its GPU when there is CUDA, else the CPU (as the original)."""
    if torch.cuda.is_available():
        return torch.device("cuda", _local_rank() % torch.cuda.device_count())
    return torch.device("cpu")


def load_state_dict(path, **kwargs) -> dict[str, torch.Tensor]:
    """The state_dict in ``path`` (``.pt``/``.pth`` read weights-only, or ``.safetensors``).

    ``map_location`` (a device or its name) moves the tensors; without it they stay on the CPU.
    Other ``torch.load`` keywords are refused: loading never unpickles code.
    """
    map_location = kwargs.pop("map_location", None)
    if kwargs.pop("weights_only", True) is not True:
        raise UsageError("dist_util.load_state_dict loads weights only (weights_only=False is not supported)")
    if kwargs:
        raise UsageError(f"dist_util.load_state_dict does not take {', '.join(sorted(kwargs))}",
                         hint="it takes a path and map_location")
    state = _load_weights(path)
    if map_location is None:
        return state
    if not isinstance(map_location, (str, torch.device)):
        raise UsageError(f"map_location must be a device or its name, got {type(map_location).__name__}")
    device = torch.device(map_location)
    return {k: v.to(device) for k, v in state.items()}


def sync_params(params) -> None:
    """Broadcast each tensor from rank 0 (in place)."""
    for p in params:
        with torch.no_grad():
            dist.broadcast(p, 0)


__all__ = ["GPUS_PER_NODE", "SETUP_RETRY_COUNT", "dev", "load_state_dict", "setup_dist", "sync_params"]
