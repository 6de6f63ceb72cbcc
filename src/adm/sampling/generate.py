"""Generating one batch of images from explicit sample indices, reproducibly.

Sample *i* is a function of ``(seed, i)`` alone: its class label (when drawn at random), its
initial noise x_T and every step's noise come, in that order, from a ``torch.Generator`` seeded
with ``sample_seed(seed, i)``. Which batch, process or restart it is drawn in does not matter, so
a sharded, interrupted, multi-GPU run gives the same images as one uninterrupted loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from adm.diffusion.continuous import NoiseSchedule
from adm.diffusion.grids import make_grid
from adm.diffusion.process import Parameterization
from adm.errors import UsageError
from adm.sampling.denoiser import Denoiser
from adm.sampling.guidance import ClassifierGuidance
from adm.sampling.noise import PerSampleNoise
from adm.sampling.registry import SamplerOptions, SamplerSpec, get_sampler

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def sample_seed(seed: int, index: int) -> int:
    """A well-mixed 63-bit seed for sample ``index`` of a run seeded with ``seed``."""
    state = np.random.SeedSequence([seed, index]).generate_state(2, dtype=np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def generators_for(seed: int, indices: Sequence[int]) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(sample_seed(seed, i)) for i in indices]


def parse_classes(spec: str, num_classes: int) -> str | list[int]:
    """``random``, ``balanced``, a comma list of ids, or a file of ids → a class plan."""
    from pathlib import Path

    if spec in ("random", "balanced"):
        return spec
    text = Path(spec).read_text() if Path(spec).is_file() else spec
    try:
        ids = [int(tok) for tok in text.replace(",", " ").split()]
    except ValueError:
        raise UsageError(f"--classes must be random, balanced, a comma list of class ids or a file of ids, got {spec!r}") from None
    if not ids:
        raise UsageError("--classes lists no class ids")
    bad = [i for i in ids if not 0 <= i < num_classes]
    if bad:
        raise UsageError(f"class id {bad[0]} is out of range for a model of {num_classes} classes (0..{num_classes - 1})")
    return ids


def labels_for(
    plan: str | list[int], indices: Sequence[int], num_classes: int, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """Labels of samples ``indices``: drawn per sample (random), cycled (balanced), or from a list."""
    if plan == "random":
        return torch.stack([torch.randint(num_classes, (), generator=g) for g in generators])
    if plan == "balanced":
        return torch.tensor([i % num_classes for i in indices], dtype=torch.long)
    return torch.tensor([plan[i % len(plan)] for i in indices], dtype=torch.long)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] NCHW floats → uint8 NHWC, truncating exactly as the original scripts do."""
    return ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().cpu().numpy()


def from_uint8(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 NHWC → [-1, 1] NCHW float32 (the original's ``x / 127.5 - 1``)."""
    return torch.from_numpy(np.array(images, dtype=np.uint8)).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1


def with_precision(module: Callable, device: torch.device, precision: str) -> Callable:
    """Run ``module`` under autocast (fp16/bf16) and hand float32 back to the sampler's maths."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", "choose fp32, fp16 or bf16")
    dtype = PRECISIONS[precision]

    def call(x, t, **kwargs):
        context = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()
        with context:
            return module(x, t, **kwargs).float()

    return call


STRONG_GUIDANCE = 4.0  # classifier scales from which single-step high-order solvers are warned about


class SamplerSettings(BaseModel):
    """How to sample: sampler and its options, grid, guidance, x_0 correction, precision.

    ``steps`` is a respacing spec for ``--spacing respaced`` (``"250"``, ``"ddim25"``) and a number
    of network evaluations otherwise; None means the caller's default. ``spacing`` None means the
    sampler's own default. ``guidance_interval`` (lo, hi) limits the classifier to lo ≤ t/T ≤ hi.
    ``threshold`` is the quantile of dynamic thresholding (None: plain clipping, if
    ``clip_denoised``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sampler: str = "ddpm"
    steps: str | None = None
    spacing: str | None = None
    options: dict[str, Any] = Field(default_factory=dict)
    scale: float = Field(0.0, ge=0)
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    clip_denoised: bool = True
    threshold: float | None = Field(None, gt=0.5, le=1.0)
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"

    @field_validator("guidance_interval")
    @classmethod
    def _interval(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not 0.0 <= lo <= hi <= 1.0:
            raise ValueError(f"the guidance interval must satisfy 0 <= lo <= hi <= 1, got {lo:g},{hi:g}")
        return value

    @classmethod
    def make(cls, **values: Any) -> SamplerSettings:
        """Validate at the edge: a bad value is a one-line error naming the option."""
        try:
            return cls(**values)
        except ValidationError as err:
            first = err.errors()[0]
            name = ".".join(str(p) for p in first["loc"])
            option = "--" + name.split(".")[0].replace("_", "-")
            raise UsageError(f"bad value for {option}: {first['msg'].removeprefix('Value error, ')}") from None

    def plan(self, schedule: NoiseSchedule, *, max_timestep: float | None = None) -> SamplingPlan:
        """The sampler, its validated options and the grid on ``schedule`` (done once per run)."""
        spec = get_sampler(self.sampler)
        options = spec.parse_options(self.options)
        spacing = self.spacing or spec.spacing
        if spec.chain_only and spacing != "respaced":
            raise UsageError(f"{spec.name} walks the model's respaced chain", "drop --spacing or use a solver such as dpm++2m")
        steps = self.steps or (str(schedule.num_steps) if spacing == "respaced" else "20")
        if spacing != "respaced" and steps.isdigit():  # a count of evaluations → of grid levels
            steps = str(spec.levels_for(int(steps)))
        sigmas = make_grid(schedule, spacing, steps, max_timestep=max_timestep)
        warnings = []
        if spec.single_step_order > 1 and self.scale >= STRONG_GUIDANCE and self.threshold is None:
            warnings.append(
                f"{spec.name} is a single-step high-order solver; at classifier scale {self.scale:g} such solvers "
                "are known to degrade: consider --threshold 0.995 or a multistep sampler (dpm++2m, unipc)"
            )
        return SamplingPlan(self, spec, options, spacing, sigmas, warnings)

    def key(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class SamplingPlan:
    """Settings resolved against a schedule: what every batch of a run reuses."""

    settings: SamplerSettings
    spec: SamplerSpec
    options: SamplerOptions
    spacing: str
    sigmas: torch.Tensor  # the grid: float64, decreasing
    warnings: list[str] = field(default_factory=list)

    @property
    def evaluations(self) -> int:
        """Network evaluations per sample (what --steps counts)."""
        levels = int((self.sigmas > 0).sum())
        return self.spec.evaluations(levels)

    def key(self) -> dict[str, Any]:
        """Everything about the sampler that changes the images."""
        return {
            **self.settings.key(), "options": self.options.model_dump(mode="json"), "spacing": self.spacing,
            "grid": [float(s) for s in self.sigmas], "evaluations": self.evaluations,
        }


def run_sampler(
    model: Callable,
    schedule: NoiseSchedule,
    param: Parameterization,
    plan: SamplingPlan,
    x: torch.Tensor,
    noise: Callable[[torch.Tensor], torch.Tensor],
    *,
    model_kwargs: dict | None = None,
    classifier: Callable | None = None,
    labels: torch.Tensor | None = None,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """One sampler run from x (noisy images at the grid's first level), guided by ``classifier``
    towards ``labels`` when the plan's scale is > 0.

    This is the single path that the CLI, the Python API and the golden parity tests share.
    """
    settings = plan.settings
    guidance = None
    if classifier is not None and settings.scale > 0:
        if labels is None:
            raise UsageError("classifier guidance needs target labels")
        guidance = ClassifierGuidance(
            classifier, labels, settings.scale, settings.guidance_interval, schedule.num_steps,
            1000.0 / schedule.num_steps if schedule.rescale_timesteps else 1.0,
        )
    denoiser = Denoiser(model, schedule, param, model_kwargs or {}, guidance, settings.clip_denoised, settings.threshold)
    return plan.spec(denoiser, x, plan.sigmas, noise=noise, callback=callback, options=plan.options)


def generate_batch(
    model: torch.nn.Module,
    schedule: NoiseSchedule,
    param: Parameterization,
    plan: SamplingPlan,
    indices: Sequence[int],
    seed: int,
    *,
    image_shape: tuple[int, int, int],
    num_classes: int | None,
    class_cond: bool,
    classes: str | list[int] = "random",
    classifier: torch.nn.Module | None = None,
    low_res: torch.Tensor | None = None,
    labels: torch.Tensor | None = None,
    device: torch.device | None = None,
    callback: Callable[[dict], None] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Images (uint8 NHWC) and labels (int64, or None when the run has none) of ``indices``.

    Labels are given (upsampling from labelled base samples) or planned by ``classes``; they are
    needed when the model is class-conditional or a classifier guides it.
    """
    device = device or next(model.parameters()).device
    generators = generators_for(seed, indices)
    settings = plan.settings
    guided = classifier is not None and settings.scale > 0
    if labels is None and (class_cond or guided):
        labels = labels_for(classes, indices, num_classes, generators)
    noise = PerSampleNoise(generators)
    x_T = noise.randn((len(indices), *image_shape), device=device)
    model_kwargs = {}
    if class_cond:
        model_kwargs["y"] = labels.to(device)
    if low_res is not None:
        model_kwargs["low_res"] = low_res.to(device)
    x0 = run_sampler(
        with_precision(model, device, settings.precision),
        schedule,
        param,
        plan,
        x_T,
        noise,
        model_kwargs=model_kwargs,
        classifier=with_precision(classifier, device, settings.precision) if guided else None,
        labels=labels.to(device) if labels is not None else None,
        callback=callback,
    )
    return to_uint8(x0), (labels.cpu().numpy().astype(np.int64) if labels is not None else None)
