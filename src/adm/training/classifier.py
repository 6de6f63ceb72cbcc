"""Training the noisy classifier that guides sampling (the original's ``classifier_train.py``).

Each image is noised to a uniformly drawn chain index, ``x_t = q_sample(x_0, t, ε)`` (with
``noised=False``: the clean image at t = 0), and the classifier is trained with plain
cross-entropy on ``classifier(x_t, t)``. Training reports loss and top-1 / top-5 accuracy (and the
loss per quarter of the chain); every ``eval_every`` steps the same figures are computed on a
fixed validation subset — held out from ``--data`` (``val_fraction``) or a separate ``val_data``
— with fixed noise and timesteps, so successive evaluations are comparable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from adm.core.distributed import Dist
from adm.core.progress import ProgressFn
from adm.diffusion.gaussian import q_sample
from adm.hub.checkpoints import load_into, load_state_dict
from adm.models import NoisyClassifier
from adm.spec.factory import build_classifier, build_process, classifier_kwargs
from adm.spec.flags import ClassifierFlags, DiffusionFlags
from adm.training.config import ClassifierTrainConfig
from adm.training.data import (
    Augment,
    LabelledImages,
    SampleOrder,
    StreamDataset,
    fixed_batches,
    open_source,
    open_training_data,
    split_indices,
    to_model_input,
)
from adm.training.engine import TrainResult, run_task
from adm.training.metrics import quarter_sums
from adm.training.rundir import run_config
from adm.training.seeding import derive_seed, per_sample_normal, uniform
from adm.training.trainer import DeviceBatch, MicroOut, Trainer

if TYPE_CHECKING:
    from adm.training.runs import ResolvedRun

EVAL_BATCH = 64


def topk_correct(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    """How many rows have their label among the ``k`` largest logits."""
    k = min(k, logits.shape[-1])
    return (logits.topk(k, dim=-1).indices == labels[:, None]).any(dim=-1).sum()


class ClassifierTask:
    kind = "classifier"

    def __init__(
        self,
        flags: ClassifierFlags,
        diffusion: DiffusionFlags,
        config: ClassifierTrainConfig,
        *,
        init: str | None = None,
        source: LabelledImages | None = None,
    ):
        if source is None:
            flags, source = open_training_data(flags, config.data, config.labels, init=init)
        self.flags, self.config, self.seed = flags, config, config.seed
        self.process, _, _ = build_process(diffusion)
        size = flags.image_size
        train_idx, val_idx = split_indices(source.count, config.val_fraction, config.seed)
        self.dataset = StreamDataset(
            source, SampleOrder(train_idx, config.seed), Augment(size, config.random_crop, config.random_flip), config.seed
        )
        self.val: StreamDataset | None = None
        if config.val_data:
            val_source = open_source(
                config.val_data, image_size=size, need_labels=True, label_source=config.labels,
                class_names=source.class_names, what="--val-data",
            )
            val_idx = tuple(range(val_source.count))
        else:
            val_source = source
        if val_idx:
            order = SampleOrder(val_idx, derive_seed(config.seed, "val"))
            self.val = StreamDataset(val_source, order, Augment(size), config.seed)
        self.model = NoisyClassifier(**classifier_kwargs(flags), use_checkpoint=config.grad_checkpoint)
        if init:
            load_into(self.model, load_state_dict(init), what=f"--init {init}")

    def _noised(self, batch: DeviceBatch, purpose: str) -> tuple[torch.Tensor, torch.Tensor]:
        x0, device = batch.x, batch.x.device
        if not self.config.noised:
            return x0, torch.zeros(len(batch), dtype=torch.int64, device=device)
        steps = self.process.num_steps
        t = torch.tensor(
            [min(int(uniform(self.seed, purpose + "-t", p) * steps), steps - 1) for p in batch.positions], device=device
        )
        noise = per_sample_normal([derive_seed(self.seed, purpose + "-noise", p) for p in batch.positions], x0.shape[1:], device)
        return q_sample(self.process, x0, t, noise), t

    def _names(self, prefix: str) -> list[str]:
        quarters = [f"{prefix}loss_q{q}" for q in range(4)] if self.config.noised else []
        return [f"{prefix}loss", f"{prefix}acc@1", f"{prefix}acc@5", *quarters]

    def _sums(self, logits: torch.Tensor, labels: torch.Tensor, losses: torch.Tensor, t: torch.Tensor, prefix: str = ""):
        n = len(labels)
        sums = {
            f"{prefix}loss": (losses.detach().sum(), n),
            f"{prefix}acc@1": (topk_correct(logits, labels, 1), n),
            f"{prefix}acc@5": (topk_correct(logits, labels, 5), n),
        }
        if self.config.noised:
            sums.update(quarter_sums(losses.detach(), t, self.process.num_steps, prefix))
        return sums

    def micro(self, trainer: Trainer, batch: DeviceBatch) -> MicroOut:
        x_t, t = self._noised(batch, "train")
        logits = trainer(x_t, self.process.model_timesteps(t))
        losses = F.cross_entropy(logits, batch.y, reduction="none")
        return MicroOut(losses.mean(), self._sums(logits.detach(), batch.y, losses, t))

    def after_step(self, outs: list[MicroOut], dist: Dist) -> None:
        pass

    @torch.no_grad()
    def evaluate(self, trainer: Trainer, step: int) -> dict[str, float]:
        """Loss and accuracy on the fixed validation subset, shared out over the ranks."""
        if self.val is None:
            return {}
        from adm.training.metrics import RunningSums

        dist, device = trainer.dist, trainer.device
        positions = list(range(min(self.config.val_samples, len(self.val))))[dist.rank :: dist.world_size]
        sums = RunningSums()
        zero = torch.zeros((), device=device)
        for name in self._names("val_"):
            sums.add(name, zero, 0)  # same names on every rank, even one without validation images
        trainer.model.eval()
        for batch in fixed_batches(self.val, positions, EVAL_BATCH):
            part = DeviceBatch(to_model_input(batch.images, device), batch.labels.to(device), batch.positions)
            x_t, t = self._noised(part, "val")
            with trainer.autocast():
                logits = trainer.model(x_t, self.process.model_timesteps(t)).float()
            losses = F.cross_entropy(logits, part.y, reduction="none")
            for name, (total, count) in self._sums(logits, part.y, losses, t, prefix="val_").items():
                sums.add(name, total, count)
        trainer.model.train()
        return sums.means(dist)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def fit_classifier(
    config: ClassifierTrainConfig,
    flags: ClassifierFlags,
    run_dir: str | Path,
    *,
    diffusion: DiffusionFlags | None = None,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    preset: str | None = None,
    resume: bool = False,
) -> TrainResult:
    """Train (or continue training) a noisy classifier into ``run_dir`` (see ``fit_diffusion``).

    Flags that leave ``classifier_num_classes`` unset get the data's class count.
    """
    dist = dist or Dist()
    run_dir = Path(run_dir)
    diffusion = diffusion or DiffusionFlags()
    build_classifier(flags, device="meta")  # validates the flags before any data is read
    flags, source = open_training_data(flags, config.data, config.labels, init=config.init)
    doc = run_config("classifier", flags, config.model_dump(mode="json"), diffusion_flags=diffusion, preset=preset)

    def make_task(resuming: bool) -> ClassifierTask:
        return ClassifierTask(flags, diffusion, config, init=None if resuming else config.init, source=source)

    return run_task(doc, config, run_dir, dist, make_task, resume=resume, on_progress=on_progress)


def fit_run(run: ResolvedRun, *, dist: Dist | None = None, on_progress: ProgressFn | None = None,
            resume: bool = False) -> TrainResult:
    """The classifier task's ``fit`` (``adm.training.tasks``): ``fit_classifier`` of a resolved run."""
    return fit_classifier(run.config, run.flags, run.run_dir, diffusion=run.noise, dist=dist, on_progress=on_progress,
                          preset=run.preset, resume=resume)
