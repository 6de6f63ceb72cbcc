"""What a training run is: one typed, immutable config, validated once at the edge.

``TrainConfig`` (diffusion and super-resolution models) and ``ClassifierTrainConfig`` (the noisy
classifier) share ``CommonTrainConfig``. The resolved config is written to the run dir's
``config.json`` before the first step, so a run can be resumed or sampled from with nothing else.
Durations are in optimizer steps (``iterations``, as the CLI's ``--iterations``, is a real
stopping point, unlike the original's ``lr_anneal_steps = 0`` that never stops); ``batch_size`` is
the GLOBAL batch, split over ranks. ``steps``, the field's old name, is still read (the
``config.json`` of earlier runs, Python callers and plugin presets): ``OLD_NAMES``. A config with
a ``loss`` field chooses among its training task's named losses (``adm.training.tasks``).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from adm.core.errors import UsageError
from adm.core.validation import validated

Precision = Literal["fp32", "bf16", "fp16"]
LabelSource = Literal["auto", "prefix", "folder"]
ScheduleSampler = Literal["uniform", "loss-second-moment"]
LogFormat = Literal["jsonl", "tensorboard"]


class CommonTrainConfig(BaseModel):
    """Knobs shared by diffusion and classifier training (names follow the original where it had one)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data: str = Field(description="training images: a folder (recursive) or an npz (arr_0 uint8 NHWC, arr_1 labels)")
    labels: LabelSource = Field("auto", description="class names from the file-name prefix before '_' or the sub-folder; auto: folder if every image is in one")
    random_crop: bool = Field(False, description="random-resized crop (smaller side in [S/1.0, S/0.8]) instead of the center crop")
    random_flip: bool = Field(True, description="horizontal flip with p = 0.5 (the original's default)")
    iterations: int = Field(100_000, ge=1, description="optimizer steps to train for (the run stops there)")
    batch_size: int = Field(64, ge=1, description="GLOBAL batch size: all ranks and micro-batches together")
    microbatch: int = Field(0, ge=0, description="per-rank micro-batch for gradient accumulation; 0 = the whole local batch")
    lr: float = Field(1e-4, gt=0, description="AdamW learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW (decoupled) weight decay")
    anneal_lr: bool = Field(False, description="anneal the lr linearly to 0 at the last step")
    ema_rates: tuple[float, ...] = Field((0.9999,), description="EMA decay rates, one EMA copy each")
    grad_clip: float | None = Field(None, gt=0, description="clip the global gradient norm to this value; None = no clipping")
    precision: Precision = Field("fp32", description="fp32, or torch.amp autocast in bf16 / fp16 (fp16 with a GradScaler)")
    max_nonfinite: int = Field(10, ge=0, description="stop after this many steps in a row whose loss or gradient is not finite "
                                                    "(each is skipped, not trained on); 0 = never stop")
    grad_checkpoint: bool = Field(False, description="recompute activations in backward (the flags' use_checkpoint)")
    compile: bool = Field(False, description="torch.compile the network")
    seed: int = Field(0, ge=0, description="seeds data order, augmentation, noise, timesteps and dropout")
    save_every: int = Field(10_000, ge=1, description="write a checkpoint every this many steps (and at the end)")
    keep: int = Field(2, ge=0, description="checkpoints to keep (the newest); 0 keeps all")
    log_every: int = Field(10, ge=1, description="steps between metrics.jsonl records and progress updates")
    plot: bool = Field(False, description="draw loss.png from metrics.jsonl at every checkpoint")
    log: LogFormat = Field("jsonl", description="jsonl: metrics.jsonl (always written); tensorboard: also TensorBoard "
                                                "event files in RUN/tb (pip install \"adm-diffusion[tensorboard]\")")
    workers: int = Field(2, ge=0, description="data-loading worker processes per rank")
    init: str | None = Field(None, description="fine-tune: initial weights (a state_dict file) for the network")

    @model_validator(mode="before")
    @classmethod
    def _old_names(cls, values: Any) -> Any:
        return renamed_options(values) if isinstance(values, dict) else values

    @field_validator("ema_rates")
    @classmethod
    def _rates(cls, rates: tuple[float, ...]) -> tuple[float, ...]:
        for rate in rates:
            if not 0.0 < rate < 1.0:
                raise ValueError(f"EMA rates must lie in (0, 1), got {rate}")
        if len(set(rates)) != len(rates):
            raise ValueError("EMA rates must be distinct")
        return rates

    def local_batch(self, world_size: int) -> int:
        """Per-rank batch; a UsageError when the global batch does not split evenly."""
        micro = self.microbatch or self.batch_size // max(world_size, 1)
        if self.batch_size % world_size:
            raise UsageError(
                f"--batch-size {self.batch_size} does not divide over {world_size} processes",
                "the batch size is global: use a multiple of the number of processes",
            )
        local = self.batch_size // world_size
        if local % micro or micro > local:
            raise UsageError(
                f"--microbatch {self.microbatch} does not divide the per-process batch {local} "
                f"(--batch-size {self.batch_size} over {world_size} process{'es' if world_size > 1 else ''})",
                "pick a micro-batch that divides batch_size / processes",
            )
        return local

    def micro_size(self, world_size: int) -> int:
        return self.microbatch or self.local_batch(world_size)


class WatchConfig(BaseModel):
    """Watching a run while it trains: grids of the EMA model's samples and a metric of them.

    The engine calls the run's monitors (``adm.training.monitor``) at these steps; the API builds
    them from these fields (``adm.api.monitors``: samplers and metrics live above this layer). A
    mixin, so any task whose weights are a generator can take the same options.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_every: int = Field(0, ge=0, description="write a PNG grid of the EMA model's samples to RUN/samples/STEP.png "
                                                   "(and latest.png) every this many steps; 0 = off")
    sample_count: int = Field(16, ge=1, le=1024, description="samples in each grid (fixed seeds; balanced labels for a "
                                                             "class-conditional model)")
    sample_sampler: str | None = Field(None, description="sampler of the grids and evals (adm samplers); unset: dpm++2m, "
                                                         "or cm for a consistency model")
    sample_steps: str | None = Field(None, description="its steps; unset: 20 evaluations for a solver, 1 for cm")
    eval_every: int = Field(0, ge=0, description="compute --eval-metric on the EMA model's samples every this many "
                                                 "steps, with a checkpoint there (best.json names the best: RUN@best); 0 = off")
    eval_metric: str = Field("auto", description="a metric of adm evaluate (digits, inception, a plugin's) or one of its "
                                                 "values (digits_fd, digits_accuracy, fid, sfid, precision, recall, "
                                                 "inception_score); auto: digits for 16x16 models, else inception")
    eval_samples: int = Field(256, ge=2, description="samples per evaluation (fixed seeds)")
    eval_ref: str | None = Field(None, description="the metric's reference: an ADM reference batch, an npz of images or "
                                                   "a folder (needed for inception; digits: default the real digits)")


class TrainConfig(WatchConfig, CommonTrainConfig):
    """Training a diffusion model (base or super-resolution)."""

    schedule_sampler: ScheduleSampler = Field("uniform", description="how training timesteps are drawn")
    loss: str = Field("ddpm", description="training loss: ddpm, the ADM objective the flags set (MSE on eps / x0 / v, "
                                         "+ the bound for a learned variance; the bound with --use_kl)")
    label_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="replace each label by the null class with this probability (classifier-free guidance; sets --null_class True)")
    snapshots: tuple[int, ...] = Field((), description="extra checkpoints at these steps (comma list, e.g. 2000,4000), never deleted by --keep (an autoguidance guide)")

    @field_validator("snapshots", mode="before")
    @classmethod
    def _snapshot_list(cls, value: Any) -> Any:
        """The CLI gives the steps as text (``2000,4000``; ``none`` for none); kept sorted and distinct."""
        if isinstance(value, str):
            text = value.strip()
            if text.lower() in ("", "none"):
                return ()
            try:
                value = [int(part) for part in text.split(",") if part.strip()]
            except ValueError:
                raise ValueError(f"expected a comma list of steps (e.g. 2000,4000), got {value!r}") from None
        return value

    @field_validator("snapshots")
    @classmethod
    def _snapshot_steps(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if any(step < 1 for step in steps):
            raise ValueError(f"snapshot steps must be at least 1, got {min(steps)}")
        return tuple(sorted(set(steps)))


class ClassifierTrainConfig(CommonTrainConfig):
    """Training the noisy classifier (classifier_train.py's defaults where they differ)."""

    iterations: int = Field(150_000, ge=1, description="optimizer steps to train for (the original's --iterations)")
    lr: float = Field(3e-4, gt=0, description="AdamW learning rate")
    random_crop: bool = Field(True, description="random-resized crop for training images (the original's choice)")
    ema_rates: tuple[float, ...] = Field((), description="EMA decay rates (the original kept none for classifiers)")
    noised: bool = Field(True, description="train on q_sample(x_0, t) at uniform t (False: clean images, t = 0)")
    val_data: str | None = Field(None, description="validation images (same class names); else --val-fraction")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="hold out this fraction of --data for validation")
    val_samples: int = Field(1024, ge=1, description="validation images per evaluation (a fixed subset)")
    eval_every: int = Field(100, ge=1, description="steps between validation passes")

    @model_validator(mode="after")
    def _one_validation_source(self):
        if self.val_data and self.val_fraction:
            raise ValueError("give either val_data or val_fraction, not both (the options --val-data, --val-fraction)")
        return self


C = TypeVar("C", bound=CommonTrainConfig)


OLD_NAMES = {"steps": "iterations"}  # training options renamed since runs were first written


def renamed_options(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with old option names replaced by the current ones (both given: they must agree)."""
    values = dict(values)
    for old, new in OLD_NAMES.items():
        if old in values:
            value = values.pop(old)
            if values.setdefault(new, value) != value:
                raise UsageError(f"{new}={values[new]} and {old}={value} disagree", f"{old} is the old name of {new}: give one")
    return values


def make_config(cls: type[C], values: dict[str, Any]) -> C:
    """Validate ``values`` into ``cls`` with a one-line error naming the CLI option."""
    values = renamed_options(values)
    unknown = [k for k in values if k not in cls.model_fields]
    if unknown:
        raise UsageError(f"unknown training option {unknown[0]!r}")
    return validated(cls, values, option=option_name)


def option_name(field: str) -> str:
    """The command-line option of a config field."""
    return _OPTION_NAMES.get(field, "--" + field.replace("_", "-"))


_OPTION_NAMES = {"ema_rates": "--ema-rate"}
