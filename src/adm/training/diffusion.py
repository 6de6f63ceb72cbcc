"""Training a diffusion model: the base model, or the upsampler conditioned on a low-res copy.

Per micro-batch (the original's ``TrainLoop.forward_backward``): draw chain indices ``t`` from the
timestep sampler and noise ``ε`` (both seeded by each sample's stream position), compute the
config's loss (``loss``, a named loss of the task: ``ddpm`` is ``training_losses``, L_simple plus
L_vlb for a learned variance), and weight each sample's loss by the sampler's importance weight. With ``label_dropout`` p a sample's label is replaced by the null
class (``--null_class``, classifier-free guidance) with probability p, decided by its stream
position as well. The upsampler is conditioned on
``F.interpolate(x_0, small_size, mode="area")`` (super_res_train.py's downsampling); the
network upsamples it back bilinearly itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
import torch.nn.functional as F

from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.progress import ProgressFn
from adm.hub.checkpoints import load_into, load_state_dict
from adm.spec.factory import build_model, build_process, null_label
from adm.spec.flags import ModelFlags, SuperResFlags, image_size
from adm.training.config import TrainConfig
from adm.training.data import (
    Augment,
    LabelledImages,
    SampleOrder,
    StreamDataset,
    open_training_data,
)
from adm.training.engine import TrainResult, run_task
from adm.training.metrics import quarter_sums
from adm.training.rundir import run_config
from adm.training.seeding import derive_seed, per_sample_normal, uniform
from adm.training.tasks import get_task
from adm.training.timesteps import make_sampler
from adm.training.trainer import DeviceBatch, MicroOut, Trainer

if TYPE_CHECKING:
    from adm.training.runs import ResolvedRun

Net = TypeVar("Net", ModelFlags, SuperResFlags)


def trained_flags(flags: Net, config: TrainConfig) -> Net:
    """The network a run trains: ``flags`` plus what the training options imply of it.

    ``--grad-checkpoint`` is the flags' ``use_checkpoint``; ``--label-dropout`` needs a null class
    to drop to, so it sets ``null_class`` (recorded in ``config.json``, as the network has one
    more label row). Idempotent: the saved flags of a run give the same network again.
    """
    if config.grad_checkpoint and not flags.use_checkpoint:
        flags = flags.replace(use_checkpoint=True)
    if config.label_dropout > 0 and not flags.null_class:
        if not flags.class_cond:
            raise UsageError(f"--label-dropout {config.label_dropout:g} needs a class-conditional model",
                             "add --class_cond True to the flags, or drop --label-dropout")
        flags = flags.replace(null_class=True)
    return flags


def dropped_labels(seed: int, positions: Sequence[int], p: float) -> list[bool]:
    """Which samples train the null class: the sample at stream position q when
    ``uniform(seed, "label-dropout", q) < p``. A function of the seed and the position alone, as
    noise and timesteps are, so ranks, micro-batches and a resumed run drop the same labels."""
    return [p > 0 and uniform(seed, "label-dropout", q) < p for q in positions]


def with_null_row(state: Mapping[str, torch.Tensor], flags: ModelFlags | SuperResFlags) -> Mapping[str, torch.Tensor]:
    """Fine-tuning weights without a null class (``--init`` of a released checkpoint) into a
    network with one: every key loads as it is, and the null row is appended to ``label_emb``.

    The new row is the mean of the class rows, not zeros: the network has only ever seen its time
    embedding plus some class row, and the mean stays among those inputs (it starts as "an average
    class", near an unconditional model), while zeros would be an embedding it never saw.
    Weights that already have the row, or that do not fit for another reason, are left as they are
    (the strict load names the mismatch).
    """
    table = state.get("label_emb.weight")
    if null_label(flags) is None or table is None or table.ndim != 2 or table.shape[0] != flags.num_classes:
        return state
    mean = table.float().mean(0, keepdim=True).to(table.dtype)
    return {**state, "label_emb.weight": torch.cat([table, mean])}


class DiffusionTask:
    """Loss of a (super-resolution) diffusion model on one micro-batch.

    The loss is the config's ``loss`` among the named losses of the task ``kind``
    (``adm.training.tasks``), built from the process, adapter and loss type the flags give and
    called as ``loss(net, x0, t=t, noise=noise, model_kwargs=kwargs)``.
    """

    kind = "diffusion"

    def __init__(
        self,
        flags: ModelFlags | SuperResFlags,
        config: TrainConfig,
        *,
        init: str | None = None,
        source: LabelledImages | None = None,
    ):
        if source is None:
            flags, source = open_training_data(flags, config.data, config.labels, init=init)
        flags = trained_flags(flags, config)
        self.flags, self.seed, self.label_dropout = flags, config.seed, config.label_dropout
        self.process, self.adapter, self.loss_type = build_process(flags)
        self.loss = get_task(self.kind).loss(config.loss)(self.process, self.adapter, self.loss_type)
        self.sampler = make_sampler(config.schedule_sampler, self.process.num_steps)
        self.is_upsampler = isinstance(flags, SuperResFlags)
        self.dataset = StreamDataset(
            source,
            SampleOrder(tuple(range(source.count)), config.seed),
            Augment(image_size(flags), config.random_crop, config.random_flip),
            config.seed,
        )
        self.model = build_model(flags)
        if init:
            load_into(self.model, with_null_row(load_state_dict(init), flags), what=f"--init {init}")

    def labels(self, batch: DeviceBatch) -> torch.Tensor:
        """The batch's labels, the dropped ones (``dropped_labels``) replaced by the null class."""
        if not self.label_dropout:
            return batch.y
        drop = torch.tensor(dropped_labels(self.seed, batch.positions, self.label_dropout), device=batch.y.device)
        return torch.where(drop, torch.full_like(batch.y, null_label(self.flags)), batch.y)

    def micro(self, trainer: Trainer, batch: DeviceBatch) -> MicroOut:
        x0, n, device = batch.x, len(batch), batch.x.device
        noise = per_sample_normal([derive_seed(self.seed, "noise", p) for p in batch.positions], x0.shape[1:], device)
        t, weights = self.sampler.sample([uniform(self.seed, "timestep", p) for p in batch.positions])
        t, weights = t.to(device), weights.to(device)
        kwargs: dict[str, Any] = {}
        if self.is_upsampler:
            kwargs["low_res"] = F.interpolate(x0, size=(self.flags.small_size,) * 2, mode="area")
        if self.flags.class_cond:
            kwargs["y"] = self.labels(batch)
        terms = self.loss(trainer, x0, t=t, noise=noise, model_kwargs=kwargs)
        per_sample = terms["loss"].detach()
        sums = {key: (terms[key].detach().sum(), n) for key in ("loss", "mse", "vb") if key in terms}
        sums.update(quarter_sums(per_sample, t, self.process.num_steps))
        return MicroOut((terms["loss"] * weights).mean(), sums, batch.positions, t, per_sample)

    def after_step(self, outs: list[MicroOut], dist: Dist) -> None:
        """Feed the whole global batch's losses, in stream order, to a loss-aware sampler."""
        if not self.sampler.loss_aware:
            return
        local = [
            (p, int(t), float(loss))
            for out in outs
            for p, t, loss in zip(out.positions, out.timesteps.tolist(), out.sample_losses.tolist(), strict=True)
        ]
        merged = sorted(item for part in dist.all_gather_objects(local) for item in part)
        self.sampler.update([t for _, t, _ in merged], [loss for _, _, loss in merged])

    def evaluate(self, trainer: Trainer, step: int) -> dict[str, float]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state.get("sampler", {}))


def _prepared(config: TrainConfig, flags: Net, preset: str | None) -> tuple[Net, LabelledImages, dict[str, Any]]:
    """(the flags trained, the data, the ``config.json`` recorded): the data's class count filled
    in (``open_training_data``) and what the options imply (``trained_flags``)."""
    flags, source = open_training_data(flags, config.data, config.labels, init=config.init)
    flags = trained_flags(flags, config)
    return flags, source, run_config("diffusion", flags, config.model_dump(mode="json"), preset=preset)


def fit_diffusion(
    config: TrainConfig,
    flags: ModelFlags | SuperResFlags,
    run_dir: str | Path,
    *,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    preset: str | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train (or continue training) a diffusion model into ``run_dir``.

    Everything is validated before the run dir is touched: flags, data, batch split and
    ``config.init``. A class-conditional model whose flags leave ``num_classes`` unset gets the
    data's class count (``open_training_data``); ``trained_flags`` adds what the options imply
    (``null_class`` for label dropout). Then ``config.json`` is written (rank 0, atomically) and
    the loop runs until ``config.iterations``, resuming from the run dir's newest checkpoint when
    it has one.
    """
    dist = dist or Dist()
    flags, source, doc = _prepared(config, flags, preset)
    return run_task(
        doc, config, Path(run_dir), dist,
        lambda resuming: DiffusionTask(flags, config, init=None if resuming else config.init, source=source),
        resume=resume, on_progress=on_progress,
    )


def fit_run(run: ResolvedRun, *, dist: Dist | None = None, on_progress: ProgressFn | None = None,
            resume: bool = False) -> TrainResult:
    """The diffusion task's ``fit`` (``adm.training.tasks``): ``fit_diffusion`` of a resolved run."""
    return fit_diffusion(run.config, run.flags, run.run_dir, dist=dist, on_progress=on_progress, preset=run.preset,
                         resume=resume)


def run_document(run: ResolvedRun) -> dict[str, Any]:
    """The ``config.json`` ``fit_run`` will write (``--dry-run``), null class and all."""
    return _prepared(run.config, run.flags, run.preset)[2]
