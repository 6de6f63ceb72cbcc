"""One optimizer step: the network, AdamW, loss scaling and the EMAs, and the task protocol.

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
* Non-finite losses and gradients, in every precision: ``NonFiniteGuard`` (``adm.training.guard``)
  decides, with every rank, whether the step is taken; a skipped step changes no weight and no
  EMA.
* The gradient norm is computed every step (after unscaling); ``grad_clip`` clips it.

A *task* (diffusion or classifier) supplies the model, the dataset and the loss (``Task``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from adm.core.distributed import Dist
from adm.training.config import CommonTrainConfig
from adm.training.data import StreamDataset
from adm.training.ema import EMA
from adm.training.guard import NonFiniteGuard

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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
        self.guard = NonFiniteGuard(config.max_nonfinite, dist)

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
        return self.config.lr * (1.0 - step / self.config.iterations)

    def set_lr(self, step: int) -> float:
        lr = self.lr_at(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def step(self, micro_losses: Sequence[Callable[[], torch.Tensor]]) -> tuple[torch.Tensor, bool]:
        """Backward every micro-batch loss (already weighted by its share), then one optimizer step.

        Returns ``(grad_norm, took_step)``; ``took_step`` is False when the guard skips the step
        (a loss or gradient that is not finite on some rank, fp16 overflows included; its verdict
        is ``self.guard.last``).
        """
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for i, micro_loss in enumerate(micro_losses):
            last = i == len(micro_losses) - 1
            sync = contextlib.nullcontext() if (self.ddp is None or last) else self.ddp.no_sync()
            with sync:
                loss = micro_loss()
                losses.append(loss.detach())
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        grads = [p.grad for p in self.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm(grads) if grads else torch.zeros((), device=self.device)
        verdict = self.guard.judge(torch.stack(losses), norm, self.scaler.get_scale if self.scaler is not None else None)
        if verdict.skip:
            if self.scaler is not None:
                self.scaler.update()  # lowers the scale when the gradients overflowed, as GradScaler does
            return norm.detach(), False
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grads_with_norm_(self.params, self.config.grad_clip, norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.ema.update(self.model)
        return norm.detach(), True

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
    the batch mean whatever ``micro`` is. A step whose loss was not finite (on any rank) returns no
    ``outs``: nothing of it is logged or fed to the task.
    """
    outs: list[MicroOut] = []

    def run_micro(part: DeviceBatch) -> torch.Tensor:
        out = task.micro(trainer, part)
        outs.append(out)
        return out.loss * (len(part) / len(batch))

    norm, took = trainer.step([lambda p=p: run_micro(p) for p in batch.split(micro)])
    return norm, took, outs if trainer.guard.last.loss_finite else []
