"""What ``adm train`` watches while it trains: grids of samples and a metric of them (``--sample-every``,
``--eval-every``), as monitors of ``adm.training.monitor``.

``run_monitors`` is the factory ``adm.api.training`` installs around a training call; the engine
asks it for a run's monitors before anything is written, so a bad sampler, metric or reference
is a one-line error up front. Both monitors draw samples the same way (``Drawer``): the sampler
and steps of ``--sample-sampler`` / ``--sample-steps`` (default dpm++2m with 20 evaluations; one
consistency step for a consistency model), unguided, the seed of the run and sample *i* from
its own generator, so every grid shows the same noise and labels (balanced over the classes of
a class-conditional model) at every step.

* ``SampleGrid`` writes ``RUN/samples/STEP.png`` and ``RUN/samples/latest.png`` (atomically);
* ``MetricMonitor`` computes a metric of the evaluation registry (``adm evaluate``'s, plugins
  too) on ``--eval-samples`` samples: the digits judge's digits-FD and accuracy, or OpenAI's
  evaluator protocol against ``--eval-ref`` (FID, sFID, IS, precision, recall); its headline
  value (``--eval-metric``, ``OBJECTIVES``) ranks the checkpoints (``best.json``, ``RUN@best``).

A task trained elsewhere (``adm distill``) is watched the same way: wrap its training call in
``adm.training.monitor.watching(run_monitors)``; any config with the ``WatchConfig`` fields and
a run whose ``config.json`` records model flags can be.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from torch import nn

from adm.api.generation import columns
from adm.api.models import LoadedModel
from adm.api.setup import Setup, choose_steps
from adm.api.sources import ema_is_young
from adm.core.distributed import Dist
from adm.core.errors import AdmError, UsageError
from adm.core.fileio import atomic_path
from adm.core.progress import Progress
from adm.core.suggest import did_you_mean
from adm.data.grid import make_grid, save_grid
from adm.data.images import ImageCollection, npz_keys, open_images
from adm.evaluation.metrics import (
    EvaluationRequest,
    MetricSpec,
    available_metrics,
    evaluate_samples,
)
from adm.sampling.batches import SampleProducer
from adm.sampling.precision import default_precision, prepare
from adm.sampling.registry import get_sampler
from adm.sampling.settings import SamplerSettings, SamplingPlan
from adm.spec.factory import noise_schedule
from adm.spec.flags import ModelFlags, SuperResFlags
from adm.training.config import WatchConfig
from adm.training.monitor import Monitor, Objective, Observation, WatchedRun
from adm.training.rundir import run_flags
from adm.training.tasks import get_task

SAMPLES = "samples"  # RUN/samples/000200.png, latest.png
LATEST = "latest.png"
DEFAULT_SAMPLER = "dpm++2m"  # cheap and good at 20 evaluations for every family
HEADLINE = {"inception": "fid", "digits": "digits_fd"}  # the value of a metric that ranks checkpoints
HIGHER_IS_BETTER = {"inception_score", "precision", "recall", "digits_accuracy"}  # the others: lower is better
IMAGE_METRICS = {"inception", "digits"}  # the built-in metrics read RGB or grayscale images only
NEEDS_REF = {"inception"}  # an Inception metric against ImageNet means nothing for other data: no default
MIN_SAMPLE_BATCH = 16


def run_monitors(run: WatchedRun) -> list[Monitor]:
    """The monitors a run's config asks for (none for a config without ``WatchConfig``'s fields)."""
    config = run.config
    if not isinstance(config, WatchConfig):
        return []
    _check_unused(config)
    if not (config.sample_every or config.eval_every):
        return []
    flags = _watched_flags(run)
    drawer = Drawer.make(flags, config, run.dist, get_task(run.doc["kind"]).sampler_defaults(run.doc))
    monitors: list[Monitor] = []
    if config.eval_every:
        monitors.append(MetricMonitor.make(config, flags, drawer, run.dist))
    if config.sample_every:
        monitors.append(SampleGrid(config.sample_every, config.sample_count, drawer, run.run_dir / SAMPLES,
                                   columns("balanced" if drawer.classes else None, flags.num_classes)))
    return monitors


def _check_unused(config: WatchConfig) -> None:
    """An option of the grids or the evaluations given without what uses it is a mistake, not a no-op."""
    if not config.eval_every and (config.eval_metric != "auto" or config.eval_ref):
        raise UsageError("--eval-metric and --eval-ref choose what --eval-every computes, and it is not given",
                         "add --eval-every N (steps between evaluations)")
    if not (config.sample_every or config.eval_every) and (config.sample_sampler or config.sample_steps):
        raise UsageError("--sample-sampler and --sample-steps choose how --sample-every and --eval-every sample, "
                         "and neither is given", "add --sample-every N (steps between sample grids)")


def _watched_flags(run: WatchedRun) -> ModelFlags:
    """The recorded network (the data's class count filled in); base generators only."""
    task = get_task(run.doc["kind"])
    if not task.generator:
        raise UsageError(f"a {task.trains} yields no samples to watch", "drop --sample-every and --eval-every")
    flags = run_flags(run.doc)
    if isinstance(flags, SuperResFlags):
        raise UsageError("--sample-every and --eval-every sample a base model; an upsampler needs low-resolution "
                         "images to condition on", "drop them, and upsample with `adm upsample --run-dir` afterwards")
    return flags


@dataclass
class Drawer:
    """Samples of the watched weights: one plan, fixed seeds and labels, a batch that fits."""

    flags: ModelFlags
    plan: SamplingPlan
    seed: int
    batch: int
    classes: str | None  # "balanced" for a class-conditional model
    notes: list[str] = field(default_factory=list)  # the plan's warnings, said with the first samples
    rate: float | None = None  # the EMA watched (the slowest, what adm sample --run-dir samples); None: raw weights
    young: bool = True  # the EMA may still be mostly its starting weights (said once)

    @classmethod
    def make(cls, flags: ModelFlags, config: WatchConfig, dist: Dist,
             defaults: dict[str, dict] | None = None) -> Drawer:
        """The sampler planned once on the model's schedule (a bad --sample-sampler/--sample-steps
        fails here), with the options the run's task gives each sampler (``TaskSpec.sampling``: a
        distilled student's grid), as ``adm sample --run-dir`` uses them."""
        name = config.sample_sampler or ("cm" if flags.is_consistency else DEFAULT_SAMPLER)
        try:
            sampler = get_sampler(name)
            steps, _ = choose_steps(flags, None, sampler, config.sample_steps)
            settings = SamplerSettings.make(sampler=sampler.name, steps=steps, options=(defaults or {}).get(sampler.name, {}),
                                            precision=default_precision(dist.device, flags.use_fp16))
            plan = settings.plan(noise_schedule(flags))
        except UsageError as err:
            raise UsageError(f"--sample-sampler/--sample-steps: {err.message}", err.hint) from None
        local = config.batch_size // max(dist.world_size, 1)
        classes = "balanced" if plan.needs_labels(flags.class_cond) else None
        notes = [f"warning: samples while training: {warning}" for warning in plan.warnings]
        rate = max(config.ema_rates) if config.ema_rates else None
        return cls(flags, plan, config.seed, max(MIN_SAMPLE_BATCH, local), classes, notes, rate)

    def said_at(self, step: int) -> list[str]:
        """The notes not said yet, and once, while the watched EMA is young (``ema_is_young``, the rule
        ``adm sample --run-dir`` warns by): why its samples look like noise."""
        notes, self.notes = self.notes, []
        if self.young and self.rate is not None and ema_is_young(self.rate, step):
            grown = math.ceil(math.log(0.1) / math.log(self.rate))
            notes.append(f"warning: the grids and evaluations watch the EMA of rate {self.rate:g}, which at step {step} "
                         f"still weighs the initial weights by {self.rate**step:.0%} (10% at step {grown}): noise until "
                         "then is expected; --ema-rate 0.99 watches a faster one")
            self.young = False
        return notes

    def __call__(self, model: nn.Module, count: int) -> tuple[np.ndarray, np.ndarray | None]:
        """uint8 ``[count, H, W, C]`` samples of ``model`` (converted in place for the plan's
        precision: it is the engine's copy) and their labels."""
        model = prepare(model, self.plan.settings.precision)
        nets = Setup(None, LoadedModel(model, self.flags), self.plan, "").networks()
        producer = SampleProducer(nets, self.plan, self.seed, self.classes or "random")
        images, labels = [], []
        for begin in range(0, count, self.batch):
            produced = producer(range(begin, min(begin + self.batch, count)))
            images.append(produced.images)
            labels.append(produced.labels)
        return np.concatenate(images), (np.concatenate(labels) if labels[0] is not None else None)


@dataclass
class SampleGrid:
    """``RUN/samples/STEP.png`` and ``latest.png``: a grid of the same seeds at every ``every`` steps."""

    every: int
    count: int
    draw: Drawer
    folder: Path
    columns: int | None = None
    name: str = "samples"
    objective: Objective | None = None
    said: bool = False

    def __call__(self, model: nn.Module, step: int) -> Observation:
        images, _ = self.draw(model, self.count)
        self.folder.mkdir(parents=True, exist_ok=True)
        path = save_grid(images, self.folder / f"{step:06d}.png", self.columns)
        with atomic_path(self.folder / LATEST) as tmp:
            shutil.copyfile(path, tmp)
        notes = [] if self.said else [f"sample grids: {self.folder / LATEST} (every {self.every} steps)"]
        self.said = True
        return Observation(images={"samples": make_grid(images, self.columns)}, notes=notes + self.draw.said_at(step))


@dataclass
class MetricMonitor:
    """A metric of the evaluation registry on ``count`` samples, every ``every`` steps."""

    every: int
    count: int
    draw: Drawer
    metric: MetricSpec
    objective: Objective
    request: EvaluationRequest
    messages: _Messages
    name: str = "eval"

    @classmethod
    def make(cls, config: WatchConfig, flags: ModelFlags, draw: Drawer, dist: Dist) -> MetricMonitor:
        """Resolve ``--eval-metric`` and check what it needs (its reference, its weights) up front."""
        metric, objective = eval_metric(config.eval_metric, flags.image_size)
        if objective.key == "digits_accuracy" and not flags.class_cond:
            raise UsageError("digits_accuracy compares samples with the labels they were drawn for, and this model is "
                             "unconditional", "use --eval-metric digits_fd")
        ref = Path(config.eval_ref) if config.eval_ref else None
        if ref is None and metric.name in NEEDS_REF:
            raise UsageError(f"--eval-metric {config.eval_metric} needs --eval-ref (a reference of your data)",
                             "pass --eval-ref DATA (an npz or folder of images, e.g. --data) or a reference batch "
                             "made by `adm evaluate --make-ref DATA -o REF.npz`")
        if ref is not None:
            _check_ref(ref, flags.image_size, metric)
        if metric.name in IMAGE_METRICS and flags.in_channels not in (1, 3):  # now, not at the first eval step
            raise UsageError(f"--eval-metric {config.eval_metric} scores RGB (or grayscale) images, and this model "
                             f"makes {flags.in_channels}-channel ones",
                             "evaluate with a metric for your data (a plugin of adm.metrics)")
        if metric.name in NEEDS_REF:
            from adm.evaluation.evaluator import inception_weights_path

            try:
                inception_weights_path(None)  # a one-line error now, not after the first eval steps
            except AdmError as err:
                raise UsageError(err.message, "run `adm download inception` first (adm train downloads nothing)") from None
        messages = _Messages()
        # a grayscale model is scored as FID of grayscale data usually is: the channel shown three times
        request = EvaluationRequest(ref=ref, dist=Dist(device=dist.device), on_progress=messages,
                                    gray_as_rgb=flags.in_channels == 1)
        return cls(config.eval_every, config.eval_samples, draw, metric, objective, request, messages)

    def __call__(self, model: nn.Module, step: int) -> Observation:
        images, labels = self.draw(model, self.count)
        with tempfile.TemporaryDirectory(prefix="adm-eval-") as tmp:
            path = Path(tmp) / "samples.npz"
            np.savez(path, arr_0=images, **({"arr_1": labels} if labels is not None else {}))
            result = evaluate_samples(open_images(path), self.metric.name, self.request).result
        numbers = {key: float(value) for key, value in result.items()
                   if isinstance(value, float) and math.isfinite(value)}
        return Observation(numbers, notes=self.draw.said_at(step) + self.messages.said())


def eval_metric(name: str, image_size: int) -> tuple[MetricSpec, Objective]:
    """``--eval-metric``: a metric of the registry (its headline value ranks checkpoints), one of
    its values by key (``fid``, ``digits_accuracy``, ...), or ``auto`` (the natural metric for the
    model's image size, as ``adm evaluate --metric auto`` picks). Unknown: did-you-mean."""
    metrics = available_metrics()
    values = {key: spec for spec in metrics.values() for key in _value_keys(spec)}
    if name == "auto":
        probe = ImageCollection(Path("."), 0, image_size, image_size)
        spec = next((m for m in metrics.values() if m.natural_for and m.natural_for(probe)), metrics["inception"])
        key = _headline(spec)
    elif name in metrics:
        spec, key = metrics[name], _headline(metrics[name])
    elif name in values:
        spec, key = values[name], name
    else:
        raise UsageError(f"unknown --eval-metric {name!r}",
                         did_you_mean(name, ["auto", *metrics, *values], "metrics and their values:"))
    direction: Literal["min", "max"] = "max" if key in HIGHER_IS_BETTER else "min"
    return spec, Objective(key, direction)


def _check_ref(ref: Path, size: int, metric: MetricSpec) -> None:
    """A reference the built-in metrics can compare the samples with: it exists, and its images
    (when it has any: a reference batch may hold statistics only) have the samples' size."""
    if not ref.exists():
        raise UsageError(f"--eval-ref {ref} does not exist")
    if metric.name not in HEADLINE or (ref.suffix == ".npz" and "arr_0" not in npz_keys(ref)):
        return
    images = open_images(ref, name="--eval-ref")
    if (images.height, images.width) != (size, size):
        raise UsageError(f"--eval-ref {ref} holds {images.width}x{images.height} images and the model makes "
                         f"{size}x{size} samples", f"pass {size}x{size} images (the training data resized and "
                         "center-cropped as adm train does) or a reference batch of such images")


def _value_keys(spec: MetricSpec) -> list[str]:
    """The keys of a metric's numbers (its rows, counts left out)."""
    return [key for _, key, fmt in spec.rows if "d}" not in fmt]


def _headline(spec: MetricSpec) -> str:
    keys = _value_keys(spec)
    if spec.name in HEADLINE:
        return HEADLINE[spec.name]
    if not keys:
        raise UsageError(f"the metric {spec.name!r} has no value to rank checkpoints by")
    return keys[0]


@dataclass
class _Messages:
    """A metric's progress, as the notes of its observations: each message (a warning about too
    few samples, ...) once per run, its bars not drawn (evaluations repeat; the training bar is
    the one to watch)."""

    heard: set[str] = field(default_factory=set)
    pending: list[str] = field(default_factory=list)

    def __call__(self, event: Progress) -> None:
        if event.message and event.message not in self.heard:
            self.heard.add(event.message)
            self.pending.append(event.message)

    def said(self) -> list[str]:
        notes, self.pending = self.pending, []
        return notes
