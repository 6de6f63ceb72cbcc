"""What every training run shares: the optimizer step, and the loop around it.

``Trainer`` owns the network (wrapped in DDP when distributed, optionally compiled), AdamW, the
fp16 ``GradScaler``, and the EMAs. One optimizer step runs the micro-batches' losses through
backward and then steps:

* Gradient accumulation: each micro-batch's loss is its mean loss times ``micro / local``, so
  the accumulated gradient is the mean over the whole local batch and micro-batching gives the
  same update as the full batch. (The original's TrainLoop summed micro-batch means, k times a
  full-batch mean; its classifier_train weighted them as here.) DDP then averages the ranks'
  gradients, i.e. the gradient is the mean over the GLOBAL batch.
* Precision: fp32; or bf16/fp16 under ``torch.autocast`` with float32 master weights (the
  network's output is cast to float32 before the loss). fp16 scales the loss with a
  ``GradScaler``; a step whose gradients overflow is skipped and so is the EMA update.
* The gradient norm is computed every step (after unscaling); ``grad_clip`` clips it.

``fit`` is the loop: resume from the run dir's commit record (or start fresh), draw each step's
batch from the rank-independent stream, call the task's loss per micro-batch, update the EMAs,
log, checkpoint every ``save_every`` steps and at the end, and on SIGTERM / SIGINT checkpoint and
return early. A *task* (diffusion or classifier) supplies the model, the dataset and the loss.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from adm._version import __version__
from adm.distributed import Dist
from adm.errors import UsageError
from adm.progress import ProgressFn, report
from adm.training.checkpoint import LoadedCheckpoint, load_latest, read_records, write_checkpoint
from adm.training.config import CommonTrainConfig
from adm.training.data import StreamDataset, StreamPlan, stream_batches, to_model_input
from adm.training.ema import EMA
from adm.training.metrics import MetricsLog, RunningSums, plot_run
from adm.training.seeding import derive_seed

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
MAX_BROKEN_MESSAGES = 10


class Trainer:
    """Network, optimizer, loss scaler and EMAs of one run; ``step`` is one optimizer step."""

    def __init__(self, model: nn.Module, config: CommonTrainConfig, dist: Dist):
        self.config, self.dist, self.device = config, dist, dist.device
        self.model = model.to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.ddp: nn.parallel.DistributedDataParallel | None = None
        if dist.active:
            self.ddp = nn.parallel.DistributedDataParallel(
                self.model,
                device_ids=[self.device] if self.device.type == "cuda" else None,
                bucket_cap_mb=128,
            )
        net = self.ddp if self.ddp is not None else self.model
        self.net = torch.compile(net) if config.compile else net
        self.optimizer = torch.optim.AdamW(self.params, lr=config.lr, weight_decay=config.weight_decay)
        self.amp_dtype = AMP_DTYPES.get(config.precision)
        self.scaler = (
            # growth every 1000 good steps ~ the original's lg_loss_scale += 1e-3 per step
            torch.amp.GradScaler(self.device.type, growth_interval=1000) if config.precision == "fp16" else None
        )
        self.ema = EMA(self.model, config.ema_rates)

    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def __call__(self, *args, **kwargs) -> torch.Tensor:
        """The (DDP / compiled) network in the training precision; the output as float32."""
        with self.autocast():
            out = self.net(*args, **kwargs)
        return out.float()

    def lr_at(self, step: int) -> float:
        if not self.config.anneal_lr:
            return self.config.lr
        return self.config.lr * (1.0 - step / self.config.steps)

    def set_lr(self, step: int) -> float:
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self, micro_losses: Sequence[Callable[[], torch.Tensor]]) -> tuple[torch.Tensor, bool]:
        """Backward every micro-batch loss (already weighted by its share), then one optimizer step.

        Returns ``(grad_norm, took_step)``; ``took_step`` is False only for an fp16 overflow.
        """
        self.optimizer.zero_grad(set_to_none=True)
        for i, micro_loss in enumerate(micro_losses):
            last = i == len(micro_losses) - 1
            sync = contextlib.nullcontext() if (self.ddp is None or last) else self.ddp.no_sync()
            with sync:
                loss = micro_loss()
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.config.grad_clip, norm)
        took = True
        if self.scaler is not None:
            took = bool(torch.isfinite(norm))
            self.scaler.step(self.optimizer)  # skips the update itself when the gradients overflowed
            self.scaler.update()
        else:
            self.optimizer.step()
        if took:
            self.ema.update(self.model)
        return norm.detach(), took

    @torch.no_grad()
    def param_norm(self) -> float:
        return float(torch.nn.utils.get_total_norm([p.detach() for p in self.params]))


# --------------------------------------------------------------------------------------------
# Tasks


@dataclass
class DeviceBatch:
    """A (micro-)batch on the device: images in [-1, 1] NCHW, labels, stream positions."""

    x: torch.Tensor
    y: torch.Tensor
    positions: list[int]

    def __len__(self) -> int:
        return len(self.positions)

    def split(self, size: int) -> list[DeviceBatch]:
        return [
            DeviceBatch(self.x[i : i + size], self.y[i : i + size], self.positions[i : i + size])
            for i in range(0, len(self), size)
        ]


@dataclass
class MicroOut:
    """A micro-batch's loss (mean of its importance-weighted per-sample losses) and metric sums."""

    loss: torch.Tensor
    sums: dict[str, tuple[torch.Tensor, Any]] = field(default_factory=dict)  # name -> (sum, count)
    positions: list[int] = field(default_factory=list)
    timesteps: torch.Tensor | None = None
    sample_losses: torch.Tensor | None = None


class Task(Protocol):
    """What a kind of training provides to ``fit``."""

    kind: str
    model: nn.Module
    dataset: StreamDataset

    def micro(self, trainer: Trainer, batch: DeviceBatch) -> MicroOut: ...

    def after_step(self, outs: list[MicroOut], dist: Dist) -> None: ...

    def evaluate(self, trainer: Trainer, step: int) -> dict[str, float]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def train_step(trainer: Trainer, task: Task, batch: DeviceBatch, micro: int) -> tuple[torch.Tensor, bool, list[MicroOut]]:
    """One optimizer step on a rank's batch, in micro-batches of ``micro`` samples.

    Each micro-batch loss is weighted by its share of the batch, so the accumulated gradient is
    the batch mean whatever ``micro`` is.
    """
    outs: list[MicroOut] = []

    def run_micro(part: DeviceBatch) -> torch.Tensor:
        out = task.micro(trainer, part)
        outs.append(out)
        return out.loss * (len(part) / len(batch))

    norm, took = trainer.step([lambda p=p: run_micro(p) for p in batch.split(micro)])
    return norm, took, outs


# --------------------------------------------------------------------------------------------
# Signals


class GracefulStop:
    """SIGTERM / SIGINT ask the loop to checkpoint and stop; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------------------------
# The loop


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done
    start_step: int  # where this call began (0, or the step it resumed from)
    interrupted: bool = False
    signal: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the last logged record
    skipped_images: int = 0


def _rng_state(device: torch.device) -> dict[str, Any]:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _restore_rng(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _restore(
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
            report(on_progress, "train", step, config.steps, "step", message=f"EMA {rate} is new: it starts from the step-{step} weights")
    try:
        trainer.optimizer.load_state_dict(ckpt.optimizer)
    except (ValueError, KeyError) as err:
        raise UsageError(f"the optimizer state in the run dir does not fit this network ({err})") from None
    for group in trainer.optimizer.param_groups:
        group["weight_decay"] = config.weight_decay
    if trainer.scaler is not None and state.get("scaler"):
        trainer.scaler.load_state_dict(state["scaler"])
    task.load_state_dict(state.get("task", {}))
    rng = state.get("rng") or []
    if int(state.get("world_size", 0)) == dist.world_size and len(rng) == dist.world_size:
        _restore_rng(rng[dist.rank], dist.device)
    else:
        torch.manual_seed(derive_seed(config.seed, "torch", dist.rank, step))
        if dist.is_main:
            report(
                on_progress, "train", step, config.steps, "step",
                message=f"resuming on {dist.world_size} process(es) (saved on {state.get('world_size')}): dropout RNGs reseeded",
            )
    return step, int(state["data_position"])


def _save(trainer: Trainer, task: Task, run_dir: Path, step: int, plan: StreamPlan, config: CommonTrainConfig) -> None:
    rng = trainer.dist.all_gather_objects(_rng_state(trainer.device))
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
        )
        if config.plot:
            plot_run(run_dir)
    trainer.dist.barrier()


def _any_rank(flag: bool, dist: Dist) -> bool:
    if not dist.active:
        return flag
    return bool(dist.all_reduce_mean(torch.tensor([float(flag)], device=dist.device)).item() > 0)


NETWORK_KEYS = ("model_flags", "classifier_flags", "diffusion_flags")
RUNTIME_FLAGS = {"use_checkpoint", "use_fp16", "classifier_use_fp16"}  # do not change the network


def open_run(run_dir: Path, doc: dict[str, Any], *, resume: bool) -> bool:
    """Check ``run_dir`` before anything is written; True when it holds a checkpoint to continue.

    A run dir with checkpoints continues only with the same kind and network flags; ``resume``
    insists that there is something to continue.
    """
    from adm.training.rundir import read_run_config

    records = read_records(run_dir) if run_dir.is_dir() else []
    if not records:
        if resume:
            raise UsageError(f"nothing to resume: {run_dir} has no checkpoint", "drop --resume to start a new run")
        return False
    old = read_run_config(run_dir)
    if old.get("kind") != doc["kind"]:
        raise UsageError(f"{run_dir} holds a {old.get('kind')} run, not a {doc['kind']} run", "use another --run-dir")
    for key in NETWORK_KEYS:
        before, after = old.get(key) or {}, doc.get(key) or {}
        for name in sorted(set(before) | set(after)):
            if name not in RUNTIME_FLAGS and before.get(name) != after.get(name):
                raise UsageError(
                    f"{run_dir} was trained with --{name} {before.get(name)}, not {after.get(name)}",
                    "continue with the same flags, or use another --run-dir",
                )
    return True


def run_task(
    doc: dict[str, Any],
    config: CommonTrainConfig,
    run_dir: Path,
    dist: Dist,
    make_task: Callable[[bool], Task],
    *,
    resume: bool,
    on_progress: ProgressFn | None = None,
) -> TrainResult:
    """What every training entry point does once its flags are settled.

    Check the run dir and the batch split before anything is written, seed the network's
    initialisation, build the task (``make_task(resuming)``), record ``config.json`` (rank 0,
    atomically), then ``fit``.
    """
    from adm.training.rundir import write_run_config

    resuming = open_run(run_dir, doc, resume=resume)
    config.local_batch(dist.world_size)  # checks the split
    torch.manual_seed(derive_seed(config.seed, "init"))
    task = make_task(resuming)
    if dist.is_main:
        write_run_config(run_dir, doc)
    dist.barrier()
    return fit(task, config, run_dir, dist, on_progress)


def fit(
    task: Task,
    config: CommonTrainConfig,
    run_dir: Path,
    dist: Dist,
    on_progress: ProgressFn | None = None,
) -> TrainResult:
    """Train ``task`` until ``config.steps`` (resuming from ``run_dir`` when it holds a checkpoint)."""
    on_progress = on_progress if dist.is_main else None
    micro = config.micro_size(dist.world_size)
    trainer = Trainer(task.model, config, dist)
    records = read_records(run_dir)
    if records and records[-1].step >= config.steps:
        # nothing to train: no progress bar (it would read "30/20 step"), nothing rewritten
        return TrainResult(run_dir=run_dir, step=records[-1].step, start_step=records[-1].step)
    ckpt = load_latest(run_dir)
    if ckpt is not None:
        start, position = _restore(trainer, task, ckpt, config, dist, on_progress)
        report(on_progress, "train", start, config.steps, "step", message=f"resumed from step {start}")
    else:
        start, position = 0, 0
        torch.manual_seed(derive_seed(config.seed, "torch", dist.rank))
    plan = StreamPlan(config.batch_size, dist.world_size, dist.rank, base_step=start, base_position=position)
    log = MetricsLog(run_dir, enabled=dist.is_main)
    log.truncate_after(start)
    result = TrainResult(run_dir=run_dir, step=start, start_step=start)

    batches = stream_batches(
        task.dataset, plan, start, config.steps, workers=config.workers, pin_memory=dist.device.type == "cuda"
    )
    sums = RunningSums()
    broken_local = skipped_steps = 0
    eval_every = getattr(config, "eval_every", 0)
    tick, tick_step = time.perf_counter(), start
    trainer.model.train()
    with GracefulStop() as stop:
        for step in range(start, config.steps):
            batch = next(batches)
            for line in batch.broken:
                broken_local += 1
                if broken_local <= MAX_BROKEN_MESSAGES:
                    report(on_progress, "train", step, config.steps, "step", message=f"skipped unreadable image {line}")
            lr = trainer.set_lr(step)
            device_batch = DeviceBatch(
                to_model_input(batch.images, dist.device), batch.labels.to(dist.device), batch.positions
            )
            norm, took, outs = train_step(trainer, task, device_batch, micro)
            skipped_steps += 0 if took else 1
            task.after_step(outs, dist)
            for out in outs:
                for name, (total, count) in out.sums.items():
                    sums.add(name, total, count)
            sums.add("grad_norm", norm, 1)
            done = step + 1

            record: dict[str, Any] = {}
            if done % config.log_every == 0 or done == config.steps:
                now = time.perf_counter()
                rate = (done - tick_step) / max(now - tick, 1e-9)
                tick, tick_step = now, done
                broken_total = round(
                    dist.all_reduce_mean(torch.tensor([float(broken_local)], device=dist.device)).item() * dist.world_size
                )
                result.skipped_images = broken_total
                record.update(sums.means(dist), steps_per_sec=rate, img_per_sec=rate * config.batch_size)
                record["param_norm"] = trainer.param_norm()
                if trainer.scaler is not None:
                    record.update(loss_scale=trainer.scaler.get_scale(), skipped_steps=skipped_steps)
                if broken_total:
                    record["skipped_images"] = broken_total
            if eval_every and done % eval_every == 0:
                record.update(task.evaluate(trainer, done))
            if record:
                record = {"step": done, "samples": plan.step_start(done), "lr": lr, **record}
                log.append(record)
                result.metrics = record
                info = {k: record[k] for k in ("loss", "mse", "vb", "acc@1", "val_acc@1", "grad_norm") if k in record}
                if "steps_per_sec" in record:
                    info["it/s"] = record["steps_per_sec"]
                report(on_progress, "train", done, config.steps, "step", info=info)

            stopping = _any_rank(stop.requested, dist)
            if done % config.save_every == 0 or done == config.steps or stopping:
                _save(trainer, task, run_dir, done, plan, config)
            result.step = done
            if stopping:
                result.interrupted, result.signal = True, stop.signum
                break
    del batches  # stops the loader's workers
    return result
