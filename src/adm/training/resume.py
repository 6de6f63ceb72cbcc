"""Exact resume: what a checkpoint holds beyond the weights, written and read back.

Besides the model, EMAs and optimizer (``adm.training.checkpoint``), a checkpoint's state records
the step, the position in the data stream, every rank's RNG state, the task's state (e.g. the
loss-second-moment sampler's history), the loss scaler and the non-finite step counts, so that
continuing a run gives bitwise the weights of an uninterrupted one (same world size); on another
world size the dropout RNGs are reseeded and the run says so.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import Any

import torch

from adm._version import __version__
from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.progress import report
from adm.training.checkpoint import LoadedCheckpoint, write_checkpoint
from adm.training.config import CommonTrainConfig
from adm.training.data import StreamPlan
from adm.training.metrics import plot_run
from adm.training.seeding import derive_seed
from adm.training.trainer import Task, Trainer


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def restore(
    trainer: Trainer, task: Task, ckpt: LoadedCheckpoint, config: CommonTrainConfig, dist: Dist, on_progress
) -> tuple[int, int]:
    """Load a checkpoint into the trainer; returns ``(step, data position)``."""
    state = ckpt.state
    step = int(state["step"])
    trainer.model.load_state_dict(ckpt.model)
    for rate in trainer.ema.rates:
        if rate in ckpt.emas:
            trainer.ema.load(rate, ckpt.emas[rate])
        elif dist.is_main:
            report(on_progress, "train", step, config.iterations, "step", message=f"EMA {rate} is new: it starts from the step-{step} weights")
    try:
        trainer.optimizer.load_state_dict(ckpt.optimizer)
    except (ValueError, KeyError) as err:
        raise UsageError(f"the optimizer state in the run dir does not fit this network ({err})") from None
    for group in trainer.optimizer.param_groups:
        group["weight_decay"] = config.weight_decay
    if trainer.scaler is not None and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    trainer.guard.load_state_dict(state.get("guard", {}))
    task.load_state_dict(state.get("task", {}))
    rng = state.get("rng") or []
    if int(state.get("world_size", 0)) == dist.world_size and len(rng) == dist.world_size:
        restore_rng(rng[dist.rank], dist.device)
    else:
        torch.manual_seed(derive_seed(config.seed, "torch", dist.rank, step))
        if dist.is_main:
            report(
                on_progress, "train", step, config.iterations, "step",
                message=f"resuming on {dist.world_size} process(es) (saved on {state.get('world_size')}): dropout RNGs reseeded",
            )
    return step, int(state["data_position"])


def save(trainer: Trainer, task: Task, run_dir: Path, step: int, plan: StreamPlan, config: CommonTrainConfig,
         protect: Collection[int] = ()) -> None:
    """Write the checkpoint of ``step`` (rank 0); ``protect``: steps ``--keep`` must not delete."""
    trainer.guard.check_weights(trainer.params, step, run_dir)  # never a checkpoint of non-finite weights
    rng = trainer.dist.all_gather_objects(rng_state(trainer.device))
    if trainer.dist.is_main:
        state = {
            "kind": task.kind,
            "step": step,
            "data_position": plan.step_start(step),
            "batch_size": config.batch_size,
            "world_size": trainer.dist.world_size,
            "seed": config.seed,
            "rng": rng,
            "task": task.state_dict(),
            "scaler": trainer.scaler.state_dict() if trainer.scaler is not None else {},
            "guard": trainer.guard.state_dict(),
            "adm_version": __version__,
        }
        write_checkpoint(
            run_dir,
            step,
            model=trainer.model.state_dict(),
            emas={rate: trainer.ema.state_dict(rate, trainer.model) for rate in trainer.ema.rates},
            optimizer=trainer.optimizer.state_dict(),
            state=state,
            keep=config.keep,
            snapshot=step in getattr(config, "snapshots", ()),
            protect=protect,
        )
        if config.plot:
            plot_run(run_dir)
    trainer.dist.barrier()
