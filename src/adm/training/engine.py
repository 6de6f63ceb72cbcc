"""The training loop: resume or start, one optimizer step per batch, log, checkpoint, stop cleanly.

``fit`` resumes from the run dir's commit record (or starts fresh), draws each step's batch from
the rank-independent stream, runs ``train_step`` (``adm.training.trainer``), logs, checkpoints every
``save_every`` steps, at the ``snapshots`` steps (kept whatever ``keep`` says) and at the end, and
on SIGTERM / SIGINT checkpoints and returns early. ``run_task`` is what every entry point does
before that. The run's monitors (``adm.training.monitor``: sample grids, evaluations) run at their
steps with the EMA weights, on rank 0, without touching the training's RNG streams; an evaluation
step is also a checkpoint step, and the best-scoring checkpoint is kept (``best.json``).

Speed and ETA: ``img_per_sec`` is optimizer steps per second times the GLOBAL batch (every rank
and micro-batch), the time spent in monitors left out; the ETA to ``iterations`` is the session's
pace (its first step, which compiles and warms up, left out) plus the monitors still to come at
their mean cost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from adm.core.distributed import Dist
from adm.core.progress import ProgressFn, report
from adm.core.signals import GracefulStop
from adm.training.checkpoint import load_checkpoint
from adm.training.config import CommonTrainConfig
from adm.training.data import StreamPlan, stream_batches, to_model_input
from adm.training.metrics import MetricsLog, RunningSums, check_log_format
from adm.training.monitor import Monitor, WatchedRun, Watcher, monitors_for
from adm.training.resume import restore, save
from adm.training.rundir import newest_checkpoint, open_run, write_run_config
from adm.training.seeding import derive_seed
from adm.training.trainer import DeviceBatch, Task, Trainer, train_step

MAX_BROKEN_MESSAGES = 10


@dataclass
class TrainResult:
    run_dir: Path
    step: int  # optimizer steps done
    start_step: int  # where this call began (0, or the step it resumed from)
    interrupted: bool = False
    signal: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)  # the last logged record
    skipped_images: int = 0


class _Meter:
    """What the loop logs between records: running sums, speed, skipped steps and images."""

    def __init__(self, config: CommonTrainConfig, dist: Dist, start: int, clock: Callable[[], float] = time.perf_counter):
        self.config, self.dist, self.clock = config, dist, clock
        self.sums = RunningSums()
        self.broken_local = self.skipped_steps = self.skipped_total = 0
        self.tick, self.tick_step = clock(), start
        self.paused = 0.0  # seconds in monitors since the last record: not training
        self.pace: tuple[float, int] | None = None  # (time, step) after the session's first step
        self.paused_since_pace = 0.0

    def exclude(self, seconds: float) -> None:
        """Time spent on something else than training (the monitors): out of the speed and pace."""
        self.paused += seconds
        self.paused_since_pace += seconds

    def eta(self, done: int) -> float | None:
        """Seconds to ``iterations`` at the session's pace (None before there is one)."""
        if self.pace is None or done <= self.pace[1]:
            return None
        seconds = self.clock() - self.pace[0] - self.paused_since_pace
        return max(seconds, 0.0) / (done - self.pace[1]) * (self.config.iterations - done)

    def broken(self, line: str) -> bool:
        """Count an unreadable image; True while it is still worth a message."""
        self.broken_local += 1
        return self.broken_local <= MAX_BROKEN_MESSAGES

    def add(self, outs, norm, took: bool) -> None:
        if self.pace is None:
            self.pace, self.paused_since_pace = (self.clock(), self.tick_step + 1), 0.0
        self.skipped_steps += 0 if took else 1
        for out in outs:
            for name, (total, count) in out.sums.items():
                self.sums.add(name, total, count)
        if took:  # a skipped step's norm is not finite (adm.training.guard)
            self.sums.add("grad_norm", norm, 1)

    def record(self, trainer: Trainer, done: int) -> dict[str, Any]:
        """The means since the last record (all ranks), speed, norms; resets the sums."""
        now = self.clock()
        rate = (done - self.tick_step) / max(now - self.tick - self.paused, 1e-9)
        self.tick, self.tick_step, self.paused = now, done, 0.0
        dist = self.dist
        self.skipped_total = round(
            dist.all_reduce_mean(torch.tensor([float(self.broken_local)], device=dist.device)).item() * dist.world_size
        )
        record: dict[str, Any] = {**self.sums.means(dist), "steps_per_sec": rate, "img_per_sec": rate * self.config.batch_size}
        record["param_norm"] = trainer.param_norm()
        record.update(trainer.guard.fields())
        if trainer.scaler is not None:
            record.update(loss_scale=trainer.scaler.get_scale(), skipped_steps=self.skipped_steps)
        if self.skipped_total:
            record["skipped_images"] = self.skipped_total
        return record


def _shown(record: dict[str, Any]) -> dict[str, Any]:
    """The figures a progress bar shows of a metrics record: losses, images/s (global batch); the
    loop adds ``eta`` (seconds to ``iterations``, which the CLI draws as a time)."""
    info = {k: record[k] for k in ("loss", "mse", "vb", "acc@1", "val_acc@1", "grad_norm") if k in record}
    if "img_per_sec" in record:
        info["img/s"] = record["img_per_sec"]
    return info


def _any_rank(flag: bool, dist: Dist) -> bool:
    if not dist.active:
        return flag
    return bool(dist.all_reduce_mean(torch.tensor([float(flag)], device=dist.device)).item() > 0)


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

    Check the run dir, the batch split, the log format and the run's monitors (from the factory
    installed with ``adm.training.monitor.watching``) before anything is written, seed the
    network's initialisation, build the task (``make_task(resuming)``), record ``config.json``
    (rank 0, atomically), then ``fit``.
    """
    resuming = open_run(run_dir, doc, resume=resume)
    config.local_batch(dist.world_size)  # checks the split
    check_log_format(config.log)
    monitors = monitors_for(WatchedRun(doc, config, Path(run_dir), dist, on_progress if dist.is_main else None))
    torch.manual_seed(derive_seed(config.seed, "init"))
    task = make_task(resuming)
    if dist.is_main:
        write_run_config(run_dir, doc)
    dist.barrier()
    return fit(task, config, run_dir, dist, on_progress, monitors=monitors)


def fit(
    task: Task,
    config: CommonTrainConfig,
    run_dir: Path,
    dist: Dist,
    on_progress: ProgressFn | None = None,
    *,
    monitors: Sequence[Monitor] = (),
) -> TrainResult:
    """Train ``task`` until ``config.iterations`` (resuming from ``run_dir`` when it holds a checkpoint),
    calling ``monitors`` at their steps."""
    on_progress = on_progress if dist.is_main else None
    micro = config.micro_size(dist.world_size)
    trainer = Trainer(task.model, config, dist)
    newest = newest_checkpoint(run_dir)
    if newest is not None and newest.step >= config.iterations:
        # nothing to train: no progress bar (it would read "30/20 step"), nothing rewritten
        return TrainResult(run_dir=run_dir, step=newest.step, start_step=newest.step)
    if newest is not None:
        start, position = restore(trainer, task, load_checkpoint(run_dir, newest), config, dist, on_progress)
        report(on_progress, "train", start, config.iterations, "step", message=f"resumed from step {start}")
    else:
        start, position = 0, 0
        torch.manual_seed(derive_seed(config.seed, "torch", dist.rank))
    plan = StreamPlan(config.batch_size, dist.world_size, dist.rank, base_step=start, base_position=position)
    log = MetricsLog(run_dir, enabled=dist.is_main, tensorboard=config.log == "tensorboard")
    log.truncate_after(start)
    watcher = Watcher(monitors, run_dir, config, dist)
    watcher.open(start)
    result = TrainResult(run_dir=run_dir, step=start, start_step=start)

    batches = stream_batches(
        task.dataset, plan, start, config.iterations, workers=config.workers, pin_memory=dist.device.type == "cuda"
    )
    meter = _Meter(config, dist, start)
    eval_every = getattr(config, "eval_every", 0)
    snapshots = set(getattr(config, "snapshots", ()))  # extra checkpoints kept for good (diffusion runs)
    trainer.model.train()
    with GracefulStop() as stop, closing(log):
        for step in range(start, config.iterations):
            batch = next(batches)
            for line in batch.broken:
                if meter.broken(line):
                    report(on_progress, "train", step, config.iterations, "step", message=f"skipped unreadable image {line}")
            lr = trainer.set_lr(step)
            device_batch = DeviceBatch(
                to_model_input(batch.images, dist.device), batch.labels.to(dist.device), batch.positions
            )
            norm, took, outs = train_step(trainer, task, device_batch, micro)
            task.after_step(outs, dist)
            meter.add(outs, norm, took)
            done = step + 1
            if note := trainer.guard.check(done, run_dir):  # raises once a run has diverged
                report(on_progress, "train", done, config.iterations, "step", message=note)
            record = meter.record(trainer, done) if done % config.log_every == 0 or done == config.iterations else {}
            evals: dict[str, Any] = task.evaluate(trainer, done) if eval_every and done % eval_every == 0 else {}
            began = time.perf_counter()
            seen = watcher(trainer, done)  # the monitors due now (rank 0, the RNG states kept)
            if seen is not None:
                meter.exclude(time.perf_counter() - began)
                evals.update(seen.metrics)
                log.images(done, seen.images)
                for note in seen.notes:
                    report(on_progress, "train", done, config.iterations, "step", message=note)
            if record or evals:
                result.metrics = {"step": done, "samples": plan.step_start(done), "lr": lr, **record, **evals}
                result.skipped_images = meter.skipped_total
                log.append(result.metrics, evals=evals)  # TensorBoard: validation and monitors under eval/
                if shown := _shown(result.metrics):  # not an evaluation alone: the bar keeps its figures
                    eta = meter.eta(done)
                    if eta is not None:
                        shown["eta"] = eta + watcher.remaining_seconds(done, config.iterations)
                    report(on_progress, "train", done, config.iterations, "step", info=shown)

            stopping = _any_rank(stop.requested, dist)
            if (done % config.save_every == 0 or done == config.iterations or stopping or done in snapshots
                    or watcher.needs_checkpoint(done)):
                save(trainer, task, run_dir, done, plan, config, protect=watcher.protected())
                watcher.committed(done)
            result.step = done
            if stopping:
                result.interrupted, result.signal = True, stop.signum
                break
    del batches  # stops the loader's workers
    return result
