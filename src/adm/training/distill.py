"""Consistency distillation: a one- or two-step student of any adm model (``adm distill``).

Song et al. 2023 (§4, Algorithm 2), with what Song & Dhariwal 2023 changed that applies to
distillation (the pseudo-Huber distance instead of LPIPS). The student is the teacher's own
U-Net, initialised from the teacher's weights and read through the consistency boundary
condition: consistency_models' ``ConsistencyBoundary`` for an EDM teacher, ``ConsistencyOver``
(the boundary over the network's own VP reading) for a guided-/improved-diffusion teacher, whose
schedule and timesteps the student keeps (``student_flags``). Its checkpoints are ordinary
weights in the family's format; ``adm sample`` runs them with ``cm``.

One step, per optimizer step (all its micro-batches and ranks):

* the N levels σ_0 > … > σ_{N−1} = σ_min of a Karras grid (ρ = 7) on the student's schedule,
  from its top (the teacher's start, or ``sigma_max`` lower) down: exactly the grid the ``cm``
  sampler builds with ``karras_steps`` N;
* ``levels_per_step`` level indices n, uniform in 0 … N − 2: the step's batch is split by stream
  position into that many near-equal groups and each group draws its own n from (seed, step,
  group) alone, so micro-batches, ranks and a resumed run agree, and each group is one teacher
  call on its 2-level grid (σ_n, σ_{n+1}). The reference draws n per sample; one level for the
  whole step made the raw weights drift from one step's level to the next (docs/distill.md);
* per sample (seeded by its stream position): z, and x = x_0 + σ_n·z from the training images;
* the teacher's step x̂ from σ_n to σ_{n+1}: one step of an adm solver with the teacher's
  (guided) denoiser (``TeacherStep``, built by ``adm.api.distill``: this layer never sees a
  sampler);
* the loss d(f_θ(x, σ_n), f_θ⁻(x̂, σ_{n+1})), weight λ = 1 at every level (consistency_models'
  ``uniform`` schedule for distillation), with θ⁻ the target network: the EMA of rate
  ``target_ema`` that the trainer keeps beside the sampling EMAs (so a checkpoint saves it and a
  resumed run restores it exactly). The target runs with the student's dropout mask, as the
  reference's does.

The distances are the task's named losses (``adm.training.tasks``, chosen by ``loss``): small
callables of the sample size giving one per sample, pseudo-Huber, d = √(‖x − y‖² + c²) − c with
c = 0.00054·√dim, and l2, the mean square.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch.func import functional_call

from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn
from adm.diffusion.grids import karras_grid
from adm.hub.checkpoints import load_into, load_state_dict
from adm.spec.factory import build_model, noise_schedule, parameterization
from adm.spec.flags import ModelFlags, SuperResFlags, image_size
from adm.training.data import Augment, LabelledImages, SampleOrder, StreamDataset, open_source
from adm.training.distill_config import KIND, DistillConfig
from adm.training.engine import TrainResult, run_task
from adm.training.metrics import quarter_sums
from adm.training.rundir import run_config
from adm.training.seeding import derive_seed, per_sample_normal, uniform
from adm.training.tasks import get_task
from adm.training.trainer import DeviceBatch, MicroOut, Trainer

Tensor = torch.Tensor


# --------------------------------------------------------------------------------------------
# The distance between the student's and the target's outputs


Distance = Callable[[Tensor, Tensor], Tensor]  # (a, b) -> one distance per sample, [B]

PSEUDO_HUBER_C = 0.00054  # Song & Dhariwal 2023, §3.3: c = 0.00054·√d for d-dimensional samples


def pseudo_huber(dim: int, c: float | None = None) -> Distance:
    """d(a, b) = √(‖a − b‖² + c²) − c per sample (Song & Dhariwal 2023): like l2 near 0, like l1
    far from it, so a few large errors do not dominate the gradient; c = 0.00054·√dim by default."""
    c = PSEUDO_HUBER_C * math.sqrt(dim) if c is None else c

    def distance(a: Tensor, b: Tensor) -> Tensor:
        return torch.sqrt((a - b).square().flatten(1).sum(1) + c * c) - c

    return distance


def l2(dim: int, c: float | None = None) -> Distance:
    """The mean square per sample (consistency_models' ``l2``)."""

    def distance(a: Tensor, b: Tensor) -> Tensor:
        return (a - b).square().flatten(1).mean(1)

    return distance




# --------------------------------------------------------------------------------------------
# The student and the grid


def student_flags(teacher: ModelFlags | SuperResFlags, config: DistillConfig) -> ModelFlags:
    """The student's network: the teacher's flags (keys and shapes unchanged) as a consistency model.

    An EDM teacher gets consistency_models' ``--training_mode consistency_distillation``; a VP
    teacher keeps its family, schedule and timesteps and records its σ range: ``--sigma_min`` its
    schedule's lowest σ (where the student is the identity) and ``--sigma_max`` the top it is
    distilled from.
    """
    if isinstance(teacher, SuperResFlags):
        raise UsageError("adm distill distils base models, and the teacher is an upsampler",
                         "distil the base model of the cascade")
    if teacher.is_consistency:
        raise UsageError("the teacher is already a consistency model", "distil a diffusion model (its teacher)")
    schedule = noise_schedule(teacher)
    top = schedule.sigma_start if config.sigma_max is None else config.sigma_max
    if not schedule.sigma_min < top <= schedule.sigma_start * (1 + 1e-9):
        raise UsageError(f"--sigma-max {top:g} is outside the teacher's noise levels "
                         f"({schedule.sigma_min:.4g} .. {schedule.sigma_start:.4g})", "pick a top inside them")
    changes: dict[str, Any] = {"training_mode": "consistency_distillation", "family": teacher.family,
                               "sigma_min": schedule.sigma_min, "sigma_max": top}
    if config.dropout is not None:
        changes["dropout"] = config.dropout
    if config.grad_checkpoint:
        changes["use_checkpoint"] = True
    return teacher.replace(**changes)


def distill_levels(flags: ModelFlags, scales: int) -> Tensor:
    """σ_0 > … > σ_{N−1} = σ_min: the student's Karras grid of ``scales`` levels (float64), the one
    ``adm sample --sampler cm --sampler-opt karras_steps=N`` indexes."""
    return karras_grid(noise_schedule(flags), scales)[:-1]


def sampling_defaults(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A student samples on the grid it was distilled on: ``cm``'s ``karras_steps`` is its ``--scales``,
    so ``--steps 0,6`` names training levels and ``--steps 2`` spreads over them."""
    return {"cm": {"karras_steps": int(doc["train"]["scales"])}}


def level_index(seed: int, step: int, scales: int, group: int = 0) -> int:
    """The level n (0 … N − 2) of ``group`` of optimizer step ``step``: uniform, a function of
    (seed, step, group) alone."""
    return min(int(uniform(seed, "level", step, group) * (scales - 1)), scales - 2)


def level_groups(offsets: Tensor | list[int], batch_size: int, groups: int) -> list[int]:
    """The group of each sample at ``offsets`` (its place in the step's global batch): ``groups``
    near-equal runs of consecutive places (at most one per sample)."""
    groups = min(groups, batch_size)
    return [int(offset) * groups // batch_size for offset in offsets]


# --------------------------------------------------------------------------------------------
# The task


class TeacherStep(Protocol):
    """The teacher's ODE step: x = x_0 + σ·ε (variance exploding) at ``sigma`` → x at ``sigma_next``,
    with the teacher's guidance (``labels``: the images' classes, or None)."""

    def __call__(self, x: Tensor, sigma: float, sigma_next: float, labels: Tensor | None) -> Tensor: ...


def rng_replay(device: torch.device) -> Callable[[], None]:
    """A function that puts the RNG back where it is now: the target network then draws the same
    dropout masks as the student did (consistency_models saves and restores the RNG state so)."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def replay() -> None:
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state(cuda, device)

    return replay


class DistillTask:
    """The consistency-distillation loss of a student on one micro-batch."""

    kind = KIND

    def __init__(self, flags: ModelFlags, config: DistillConfig, teacher: TeacherStep, source: LabelledImages, *,
                 init: str | Path | None = None):
        self.flags, self.config, self.teacher, self.seed = flags, config, teacher, config.seed
        self.schedule = noise_schedule(flags)
        self.adapter, _ = parameterization(flags)
        self.levels = distill_levels(flags, config.scales)
        size = image_size(flags)
        self.distance = get_task(KIND).loss(config.loss)(3 * size * size, config.huber_c)
        self.dataset = StreamDataset(source, SampleOrder(tuple(range(source.count)), config.seed),
                                     Augment(size, config.random_crop, config.random_flip), config.seed)
        self.model = build_model(flags, device="meta" if init else None)
        if init:
            load_into(self.model, load_state_dict(init), what=f"the teacher's weights {init}")

    def step_of(self, batch: DeviceBatch) -> int:
        """The optimizer step a batch belongs to (stream positions [s·B, (s+1)·B))."""
        return batch.positions[0] // self.config.batch_size

    def consistency(self, network: Callable[..., Tensor], x: Tensor, sigmas: Tensor, labels: Tensor | None) -> Tensor:
        """f(x, σ) of ``network`` read through the student's adapter (``sigmas``: one per sample, float64)."""
        time = self.schedule.network_time(sigmas).to(device=x.device, dtype=torch.float32)
        kwargs = {"y": labels} if self.flags.class_cond else {}
        return self.adapter.denoise(network, time, x, sigmas, **kwargs)[0]

    def target_network(self, trainer: Trainer) -> Callable[..., Tensor]:
        """θ⁻: the student's module run with the target EMA's parameters (no copy), in the training precision."""
        params = dict(zip(trainer.ema.names, trainer.ema.shadows[self.config.target_ema], strict=True))

        def target(*args, **kwargs) -> Tensor:
            with trainer.autocast():
                return functional_call(trainer.model, params, args, kwargs).float()

        return target

    def micro(self, trainer: Trainer, batch: DeviceBatch) -> MicroOut:
        x0, count, device = batch.x, len(batch), batch.x.device
        step, size = self.step_of(batch), self.config.batch_size
        groups = level_groups([p - step * size for p in batch.positions], size, self.config.levels_per_step)
        drawn = {g: level_index(self.seed, step, self.config.scales, g) for g in dict.fromkeys(groups)}
        n = torch.tensor([drawn[g] for g in groups])
        sigma, sigma_next = self.levels[n], self.levels[n + 1]  # float64, one per sample
        noise = per_sample_normal([derive_seed(self.seed, "noise", p) for p in batch.positions], x0.shape[1:], device)
        labels = batch.y if bool((batch.y >= 0).all()) else None
        x = x0 + sigma.to(device=device, dtype=x0.dtype).view(-1, 1, 1, 1) * noise
        replay = rng_replay(device)
        student = self.consistency(trainer, x, sigma, labels)
        with torch.no_grad():
            x_next = torch.empty_like(x)
            for group, level in drawn.items():  # one teacher call per level
                rows = torch.tensor([i for i, g in enumerate(groups) if g == group], device=device)
                x_next[rows] = self.teacher(x[rows], float(self.levels[level]), float(self.levels[level + 1]),
                                            None if labels is None else labels[rows])
            replay()
            target = self.consistency(self.target_network(trainer), x_next, sigma_next, labels)
        losses = self.distance(student, target)
        per_sample = losses.detach()
        sums = {"loss": (per_sample.sum(), count),
                "mse": ((student.detach() - target).square().flatten(1).mean(1).sum(), count)}
        near_data = (self.config.scales - 2 - n).to(device)  # q0: the levels near the data
        sums.update(quarter_sums(per_sample, near_data, self.config.scales - 1))
        return MicroOut(losses.mean(), sums, batch.positions)

    def after_step(self, outs: list[MicroOut], dist: Dist) -> None:
        pass

    def evaluate(self, trainer: Trainer, step: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}  # levels and noise are functions of (seed, step, position); θ⁻ is an EMA of the trainer

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


# --------------------------------------------------------------------------------------------
# The run


def open_distill_data(flags: ModelFlags, config: DistillConfig, needs_labels: bool, num_classes: int) -> LabelledImages:
    """``--data``: the images x_0 starts from, with their classes when the teacher needs them (a
    class-conditional model, or guidance towards a class): at most ``num_classes`` of them."""
    source = open_source(config.data, image_size=image_size(flags), need_labels=needs_labels, label_source=config.labels)
    if source.channels != flags.in_channels:
        raise UsageError(f"--data has {source.channels}-channel images but the teacher makes {flags.in_channels}-channel ones",
                         "distil on the teacher's own training images")
    if needs_labels and source.num_classes > num_classes:
        raise UsageError(f"--data has {source.num_classes} classes but the teacher knows {num_classes}",
                         "distil on the teacher's own training images")
    return source


def distill_run_config(flags: ModelFlags, config: DistillConfig, teacher: dict[str, Any]) -> dict[str, Any]:
    """The run's ``config.json``: the student's flags, the resolved config and the teacher record
    (where it came from, its flags and weights' fingerprints, its guidance and solver)."""
    return {**run_config(KIND, flags, config.model_dump(mode="json")), "teacher": teacher}


def fit_run(run: Any, *, dist: Dist | None = None, on_progress: ProgressFn | None = None,
            resume: bool = False) -> TrainResult:
    """The task's ``fit`` for ``train_task``: a distillation needs its teacher loaded and guided as
    for sampling, which this layer cannot do; ``adm distill`` (``adm.distill``) starts and
    continues it."""
    raise UsageError(f"{run.run_dir}: a distillation is started and continued with its teacher by adm distill",
                     f"run `adm distill --run-dir {run.run_dir} ...` (adm.distill in Python)")


def fit_distill(
    config: DistillConfig,
    flags: ModelFlags,
    run_dir: str | Path,
    teacher: TeacherStep,
    *,
    doc: dict[str, Any],
    source: LabelledImages,
    init: str | Path | None,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    resume: bool = False,
) -> TrainResult:
    """Distil ``teacher`` into the student ``flags`` (initialised from the weights file ``init``),
    in ``run_dir``, continuing a run there (the bookkeeping of ``adm train``: ``run_task``)."""
    dist = dist or Dist()
    return run_task(
        doc, config, Path(run_dir), dist,
        lambda resuming: DistillTask(flags, config, teacher, source, init=None if resuming else init),
        resume=resume, on_progress=on_progress,
    )
