"""Generating one batch of images from explicit sample indices, reproducibly.

Sample *i* is a function of ``(seed, i)`` alone: its class label (when drawn at random), its
initial noise x_T and every step's noise come, in that order, from a ``torch.Generator`` seeded
with ``sample_seed(seed, i)``. Which batch, process or restart it is drawn in does not matter, so
a sharded, interrupted, multi-GPU run gives the same images as one uninterrupted loop.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch

from adm.diffusion.process import GaussianProcess, Parameterization
from adm.errors import UsageError
from adm.sampling.denoiser import Denoiser
from adm.sampling.guidance import classifier_grad_fn
from adm.sampling.noise import PerSampleNoise
from adm.sampling.samplers import get_sampler

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


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample: sampler, classifier scale, eta, clipping, precision."""

    sampler: str = "ddpm"
    scale: float = 0.0
    eta: float = 0.0
    clip_denoised: bool = True
    precision: str = "fp32"

    def validate(self) -> None:
        get_sampler(self.sampler)
        if self.scale < 0:
            raise UsageError(f"--scale must be >= 0, got {self.scale}")
        if not 0 <= self.eta <= 1:
            raise UsageError(f"--eta must lie in [0, 1], got {self.eta}")
        if self.precision not in PRECISIONS:
            raise UsageError(f"unknown precision {self.precision!r}", "choose fp32, fp16 or bf16")


def run_sampler(
    model: Callable,
    process: GaussianProcess,
    param: Parameterization,
    settings: SamplerSettings,
    x_T: torch.Tensor,
    noise: Callable[[torch.Tensor], torch.Tensor],
    *,
    model_kwargs: dict | None = None,
    classifier: Callable | None = None,
    labels: torch.Tensor | None = None,
    callback: Callable[[dict], None] | None = None,
) -> torch.Tensor:
    """One sampler run from x_T, guided by ``classifier`` towards ``labels`` when ``settings.scale`` > 0.

    This is the single path that the CLI, the Python API and the golden parity tests share.
    """
    denoiser = Denoiser(model, process, param, model_kwargs or {}, settings.clip_denoised)
    cond_fn = None
    if classifier is not None and settings.scale > 0:
        if labels is None:
            raise UsageError("classifier guidance needs target labels")
        cond_fn = classifier_grad_fn(classifier, settings.scale)
    extra = {"eta": settings.eta} if settings.sampler == "ddim" else {}
    sampler = get_sampler(settings.sampler)
    return sampler(denoiser, x_T, noise=noise, cond_fn=cond_fn, cond_kwargs={"y": labels} if cond_fn else None,
                   callback=callback, **extra)


def generate_batch(
    model: torch.nn.Module,
    process: GaussianProcess,
    param: Parameterization,
    settings: SamplerSettings,
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
        process.on(device),
        param,
        settings,
        x_T,
        noise,
        model_kwargs=model_kwargs,
        classifier=with_precision(classifier, device, settings.precision) if guided else None,
        labels=labels.to(device) if labels is not None else None,
        callback=callback,
    )
    return to_uint8(x0), (labels.cpu().numpy().astype(np.int64) if labels is not None else None)
