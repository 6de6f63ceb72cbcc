"""What fills a sampling job's batches: new samples, upsampled images (and edits, ``adm.sampling.edit``).

A *producer* turns the indices of one batch into uint8 images (and labels, and any extra arrays
to keep, such as inversion latents); the job (``adm.sampling.job``) shards, resumes and splits
the work without knowing which kind it is. Producers get what they run as a typed ``Networks``
record, not a loaded model to read flags off.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch

from adm.core.errors import UsageError
from adm.data.images import ImageCollection
from adm.data.pixels import from_uint8, to_uint8
from adm.diffusion.adapters import ModelAdapter
from adm.diffusion.continuous import NoiseSchedule
from adm.diffusion.karras import Schedule
from adm.sampling.guidance.protocol import GuidanceContext
from adm.sampling.noise import PerSampleNoise
from adm.sampling.precision import network_call
from adm.sampling.run import run_sampler
from adm.sampling.seeds import check_labels, generators_for, labels_for
from adm.sampling.settings import SamplingPlan


@dataclass(frozen=True)
class Networks:
    """The networks of a run and the facts about them a producer needs."""

    model: torch.nn.Module
    schedule: Schedule
    adapter: ModelAdapter
    device: torch.device
    image_shape: tuple[int, int, int]  # what the model generates, (C, H, W)
    num_classes: int
    class_cond: bool
    classifier: torch.nn.Module | None = None
    low_res_size: int | None = None  # upsamplers: the side of the images they condition on
    classifier_schedule: NoiseSchedule | None = None  # the classifier's training schedule (None: the model's)
    guide: torch.nn.Module | None = None  # autoguidance: the weaker model
    null_label: int | None = None  # the label that means "no class" (models trained with label dropout)

    def guidance_context(self, settings, labels: torch.Tensor | None) -> GuidanceContext:
        """What the plan's guidance methods are built from (the API loads a classifier or a guide
        only when a method of the plan needs it)."""
        classifier = guide = None
        if self.classifier is not None and settings.uses("classifier"):
            classifier = network_call(self.classifier, self.device, settings.precision, inference=False)
        if self.guide is not None and settings.uses("guide"):
            guide = network_call(self.guide, self.device, settings.precision)
        return GuidanceContext(labels.to(self.device) if labels is not None else None, classifier,
                               self.classifier_schedule, guide, self.null_label)

    def start_noise(self, noise: PerSampleNoise, count: int, sigma: float) -> torch.Tensor:
        """Pure noise at the grid's top level ``sigma``, in the model's state scaling."""
        x = noise.randn((count, *self.image_shape), device=self.device)
        scale = self.schedule.prior_std(sigma)
        return x if scale == 1.0 else x * scale


@dataclass(frozen=True)
class Produced:
    images: np.ndarray  # uint8 [B, H, W, C]
    labels: np.ndarray | None  # int64 [B]
    extra: dict[str, np.ndarray] = field(default_factory=dict)  # kept beside the npz (e.g. latents)


class Producer(Protocol):
    task: str  # what the progress bar calls the work

    def __call__(self, indices: Sequence[int]) -> Produced: ...

    def grid(self, images: np.ndarray, start: int) -> tuple[np.ndarray, int | None]:
        """The images the PNG grid shows for samples ``start..`` (and its columns)."""
        ...


def grouped_columns(count: int, group: int) -> int:
    """Grid columns for ``count`` samples shown as ``group`` square images side by side (an edit's
    input | mask | output): whole groups on each row, as many as bring the grid closest to square.

    One group a row made 20 edits (input | output) a strip 2 images wide and 20 tall; they come out
    3 groups a row, 6 by 7 images.
    """

    def squareness(per_row: int) -> float:  # |log(width / height)|, in images
        return abs(math.log(per_row * group / math.ceil(count / per_row)))

    return group * min(range(1, max(count, 1) + 1), key=squareness)


def sample_batch(
    nets: Networks,
    plan: SamplingPlan,
    indices: Sequence[int],
    seed: int,
    *,
    classes: str | list[int] = "random",
    labels: torch.Tensor | None = None,
    start: Callable[[PerSampleNoise, torch.Tensor | None], torch.Tensor] | None = None,
    extra_kwargs: dict | None = None,
    callback: Callable[[dict], None] | None = None,
    denoised_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
    sampler: Callable | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """x_0 (float, [-1, 1]) and labels of samples ``indices``.

    Labels are given (upsampling from labelled base samples, edits of labelled images) or planned
    by ``classes``; they are needed when the model is class-conditional or a classifier guides
    it. ``start(noise, labels)`` gives the sampler's first x (default: standard normal noise from
    each sample's generator, drawn after its label). ``denoised_fn`` and ``sampler`` are the edit
    modes' hooks (see ``adm.sampling.run.run_sampler``).
    """
    generators = generators_for(seed, indices)
    settings = plan.settings
    if labels is None and plan.needs_labels(nets.class_cond):
        if classes == "null" and settings.uses("classifier"):
            raise UsageError("--classes null asks for no class, and a classifier guides towards one",
                             "pass --scale 0 (a preset's or classifier run's default scale counts)")
        labels = labels_for(classes, indices, nets.num_classes, generators, nets.null_label)
    noise = PerSampleNoise(generators)
    x = start(noise, labels) if start is not None else nets.start_noise(noise, len(indices), float(plan.sigmas[0]))
    model_kwargs = dict(extra_kwargs or {})
    if nets.class_cond:
        model_kwargs["y"] = labels.to(nets.device)
    x0 = run_sampler(
        network_call(nets.model, nets.device, settings.precision), nets.schedule, nets.adapter, plan, x, noise,
        model_kwargs=model_kwargs, context=nets.guidance_context(settings, labels),
        callback=callback, denoised_fn=denoised_fn, sampler=sampler,
    )
    _check_finite(x0, indices, settings)
    return x0, labels


def _check_finite(x0: torch.Tensor, indices: Sequence[int], settings) -> None:
    """Refuse samples that overflowed: NaN would be written as black images, without a word.

    Every setting is finite (``adm.core.validation``), but finite is not enough: a classifier
    scale of 1e30 overflows float32 in the guided step (the digits model: NaN from about 1e30,
    saturated but finite at 1e20), and fp16 overflows far sooner. Where that happens depends on
    the model, the classifier and the precision, so it is detected here instead of guessed as a
    bound on ``--scale``.
    """
    bad = ~torch.isfinite(x0).flatten(1).all(dim=1)
    if bool(bad.any()):
        first = indices[int(bad.nonzero()[0])]
        scales = ", ".join(f"{name} scale {scale:g}" for name, scale, _ in settings.methods()) or "unguided"
        hint = "lower the guidance scale" if settings.guided else "check the model's weights"
        if settings.precision != "fp32":
            hint += ", or sample with --precision fp32"
        raise UsageError(f"sample {first} came out as NaN/infinity: the arithmetic overflowed "
                         f"(precision {settings.precision}, {scales})", hint)


def _labels(labels: torch.Tensor | None) -> np.ndarray | None:
    return labels.cpu().numpy().astype(np.int64) if labels is not None else None


def check_channels(images: ImageCollection, channels: int, what: str, model: str) -> None:
    """Images a model is conditioned on must have the model's channel count, in 8 bits."""
    if images.channels != channels:
        how = "" if images.is_npz else " (a folder's images are read as they are stored)"
        raise UsageError(f"{what} have {images.channels} channel(s){how}, {model} takes {channels}",
                         f"pass {what} with {channels} channel(s), e.g. an npz of uint8 [N, H, W, {channels}]")
    if images.dtype != "uint8":
        raise UsageError(f"{what} are {images.layout.describe()}; {model} reads 8-bit images (samples' format)",
                         "pass them as uint8 (an npz of uint8 [N, H, W, C], or 8-bit image files)")


@dataclass
class SampleProducer:
    """New samples from noise (``adm sample``)."""

    nets: Networks
    plan: SamplingPlan
    seed: int
    classes: str | list[int] = "random"
    columns: int | None = None
    callback: Callable[[dict], None] | None = None
    task: str = "sampling"

    def __call__(self, indices: Sequence[int]) -> Produced:
        x0, labels = sample_batch(self.nets, self.plan, indices, self.seed, classes=self.classes, callback=self.callback)
        return Produced(to_uint8(x0), _labels(labels))

    def grid(self, images: np.ndarray, start: int) -> tuple[np.ndarray, int | None]:
        return images, self.columns


@dataclass
class UpsampleProducer:
    """Upsampled base images, conditioned on them and their labels (``adm upsample``)."""

    nets: Networks
    plan: SamplingPlan
    seed: int
    base: ImageCollection
    base_labels: np.ndarray | None
    num_samples: int
    task: str = "upsampling"

    def __post_init__(self):
        size = self.nets.low_res_size
        if (self.base.height, self.base.width) != (size, size):
            raise UsageError(f"base samples are {self.base.width}x{self.base.height}, the upsampler expects {size}x{size}")
        check_channels(self.base, self.nets.image_shape[0], "base samples", "the upsampler")
        if self.num_samples > self.base.count:
            raise UsageError(f"asked for {self.num_samples} upsampled images but the base has only {self.base.count}")
        labels = self.base_labels
        if self.nets.class_cond and labels is None:
            raise UsageError("this upsampler is class-conditional but the base samples carry no labels (arr_1)")
        if labels is not None:
            if len(labels) < self.base.count:
                raise UsageError(f"base samples have {self.base.count} images but {len(labels)} labels")
            if self.nets.class_cond:
                check_labels(labels[: self.num_samples], self.nets.num_classes, f"{self.base.path} (base samples)")

    def __call__(self, indices: Sequence[int]) -> Produced:
        (chunk,) = self.base.batches(len(indices), indices[0], indices[-1] + 1)
        low_res = from_uint8(chunk, self.nets.device)
        labels = None
        if self.base_labels is not None:
            labels = torch.from_numpy(self.base_labels[indices[0] : indices[-1] + 1])
        x0, labels = sample_batch(self.nets, self.plan, indices, self.seed, labels=labels,
                                  extra_kwargs={"low_res": low_res})
        return Produced(to_uint8(x0), _labels(labels))

    def grid(self, images: np.ndarray, start: int) -> tuple[np.ndarray, int | None]:
        return images, None
