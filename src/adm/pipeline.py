"""``adm.sample`` and ``adm.upsample``: from a preset (or flags, or a training run) to images.

These resolve defaults from the preset (scale, sampler, steps, batch size), load the networks,
and run the sharded, resumable sampling job. The CLI calls exactly these functions.

>>> import adm
>>> out = adm.sample("imagenet64", num_samples=8, classes="balanced", download=True)
>>> out.images.shape, out.labels          # (8, 64, 64, 3) uint8, int64 labels
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import ValidationError

from adm.api import LoadedModel, load_model
from adm.data.images import npz_labels, open_images
from adm.distributed import Dist, pick_device
from adm.errors import MissingFileError, UsageError
from adm.flags import ModelFlags, SuperResFlags, parse_model_flags
from adm.hub.fingerprint import weights_fingerprint
from adm.presets import Preset, Registry, default_registry
from adm.progress import ProgressFn, report
from adm.sampling.batches import Networks, SampleProducer, UpsampleProducer
from adm.sampling.job import JobResult, SampleJob, run_sample_job
from adm.sampling.precision import default_precision, prepare
from adm.sampling.registry import SamplerSpec, get_sampler
from adm.sampling.seeds import parse_classes
from adm.sampling.settings import SamplerSettings, SamplingPlan


@dataclass(frozen=True)
class Samples:
    """What a sampling run produced. ``images``/``labels`` are filled when no ``out`` file was asked
    for (the run went to a temporary file); otherwise ``load()`` reads them from ``path``."""

    path: Path
    result: JobResult
    images: np.ndarray | None = None
    labels: np.ndarray | None = None
    upsampled: Samples | None = None  # the cascade's second stage (sample(..., then_upsample=...))

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        if self.images is not None:
            return self.images, self.labels
        with np.load(self.path, allow_pickle=False) as data:
            return data["arr_0"], (data["arr_1"] if "arr_1" in data.files else None)


@dataclass(frozen=True)
class ModelSource:
    """Where the networks come from: a preset, flags + checkpoint, or a training run directory.

    For a run directory, ``weights`` picks its newest checkpoint's EMA (the slowest rate, or
    ``ema_rate``) or its raw model weights.
    """

    preset: str | None = None
    model_flags: str | dict | None = None
    model_path: Path | None = None
    run_dir: Path | None = None
    classifier_flags: str | dict | None = None
    classifier_path: Path | None = None
    weights: Literal["ema", "model"] = "ema"
    ema_rate: float | None = None

    def check(self) -> None:
        if sum(x is not None for x in (self.preset, self.model_flags, self.run_dir)) != 1:
            raise UsageError("give exactly one of a preset, model flags or a run directory")
        if self.model_flags is not None and self.model_path is None:
            raise UsageError("model flags need a model checkpoint (--model-path)")
        if self.preset is None and self.classifier_path is not None and self.classifier_flags is None:
            raise UsageError("--classifier-path needs --classifier-flags for a model that is not a preset",
                             "pass the classifier's flags in the original syntax")
        if self.run_dir is None and (self.weights != "ema" or self.ema_rate is not None):
            raise UsageError("--weights and --ema-rate choose the weights of a --run-dir")


@dataclass(frozen=True)
class _Weights:
    """The network flags and weights file resolved from a source, before anything is loaded."""

    model_flags: ModelFlags | SuperResFlags | None
    model_path: Path | None
    warnings: tuple[str, ...] = ()


def _run_weights(source: ModelSource) -> _Weights:
    """The weights of a training run dir, refusing a classifier run, warning about a young EMA."""
    from adm.training.checkpoint import read_records
    from adm.training.rundir import latest_weights, read_run_config

    if read_run_config(source.run_dir)["kind"] != "diffusion":
        raise UsageError(
            f"{source.run_dir} is a classifier run (adm train-classifier), not a diffusion model",
            "sample a diffusion run; guide it with this classifier via --classifier-flags and --classifier-path",
        )
    flags, weights = latest_weights(source.run_dir, source.weights, rate=source.ema_rate)
    records = read_records(source.run_dir)
    warnings = []
    if source.weights == "ema" and records and records[-1].emas:
        rates = sorted(float(r) for r in records[-1].emas)
        rate, step = (source.ema_rate or rates[-1]), records[-1].step
        if rate**step > 0.5:
            warnings.append(
                f"the EMA of rate {rate:g} at step {step} still weighs the initial weights by {rate**step:.1%}; "
                f"sample the raw weights with --weights model, or a faster EMA with --ema-rate (this run has: "
                f"{', '.join(f'{r:g}' for r in rates)})"
            )
    return _Weights(flags, source.model_path or weights, tuple(warnings))


def _preflight(source: ModelSource, preset: Preset | None, guided: bool, download: bool, registry: Registry,
               extra: tuple[str, ...] = ()) -> None:
    """Name every missing input file in one message, before any network is built."""
    from adm.hub.download import ensure_artifact

    missing = [str(p) for p in (source.model_path, source.classifier_path if guided else None) if p and not Path(p).is_file()]
    artifacts = []
    if preset is not None:
        if source.model_path is None and preset.checkpoint:
            artifacts.append(preset.checkpoint)
        if guided and source.classifier_path is None and preset.classifier_checkpoint:
            artifacts.append(preset.classifier_checkpoint)
    artifacts += extra
    fetch = []
    if not download:
        for name in artifacts:
            try:
                ensure_artifact(name, registry=registry)
            except MissingFileError:
                fetch.append(name)
    if missing or fetch:
        parts = [f"no file {p}" for p in missing] + [f"{n} is not downloaded" for n in fetch]
        hint = f"run `adm download {' '.join(fetch)}` or pass --download" if fetch else "check the paths"
        raise MissingFileError("missing inputs: " + "; ".join(parts), hint)


def _load(source: ModelSource, weights: _Weights, *, with_classifier: bool, device, download: bool,
          registry: Registry, on_progress: ProgressFn | None = None) -> LoadedModel:
    loaded = load_model(
        source.preset, model_flags=weights.model_flags or source.model_flags, checkpoint=weights.model_path,
        classifier_flags=source.classifier_flags, classifier_checkpoint=source.classifier_path,
        with_classifier=with_classifier, device=device, download=download, registry=registry,
        on_progress=on_progress,
    )
    if loaded.classifier is not None:
        loaded.classifier.requires_grad_(False)  # guidance needs ∇_x only: no weight gradients kept
    return loaded


def _default(value, fallback):
    return fallback if value is None else value


def _identity(loaded: LoadedModel) -> dict:
    """What made the images: the architecture and the exact weights (content fingerprints)."""
    identity = {
        "model": loaded.preset.name if loaded.preset else loaded.flags.model_dump(),
        "model_weights": weights_fingerprint(loaded.checkpoint),
    }
    if loaded.classifier is not None:
        identity["classifier_weights"] = weights_fingerprint(loaded.classifier_checkpoint)
    return identity


def _notes(setup: _Setup) -> dict:
    """Sidecar facts that are not part of the key: which rule chose the steps, where the weights were."""
    files = {"model": str(setup.loaded.checkpoint)}
    if setup.loaded.classifier_checkpoint is not None:
        files["classifier"] = str(setup.loaded.classifier_checkpoint)
    return {"steps_rule": setup.steps_rule, "weights_files": files, "evaluations": setup.plan.evaluations}


def _precision(precision: str | None, loaded: LoadedModel) -> str:
    return precision or default_precision(loaded.device, loaded.flags.use_fp16)


DEFAULT_SOLVER_STEPS = "20"  # network evaluations for a solver when nothing else says


def _steps(loaded: LoadedModel, preset: Preset | None, sampler: SamplerSpec, steps: str | None) -> tuple[str, str]:
    """(steps, the rule that chose them): --steps, else the flags' --timestep_respacing (the
    original's samplers), else the preset's (when its sampler is of the same kind), else every
    step of the model's chain (as the original) or 20 evaluations for a solver."""
    if steps:
        return steps, "--steps"
    if sampler.chain_only and loaded.flags.timestep_respacing:
        return loaded.flags.timestep_respacing, "the model flags' --timestep_respacing"
    if preset is not None and get_sampler(preset.sampling.sampler).chain_only == sampler.chain_only:
        return preset.sampling.steps, f"the preset {preset.name}'s default"
    if sampler.chain_only:
        return str(loaded.flags.diffusion_steps), "every step of the model's chain (the original's default)"
    return DEFAULT_SOLVER_STEPS, f"the default for solvers ({DEFAULT_SOLVER_STEPS} evaluations)"


def _networks(loaded: LoadedModel) -> Networks:
    flags = loaded.flags
    superres = isinstance(flags, SuperResFlags)
    size = flags.large_size if superres else flags.image_size
    return Networks(loaded.model, loaded.schedule, loaded.parameterization, loaded.device, (3, size, size),
                    flags.num_classes, flags.class_cond, loaded.classifier, flags.small_size if superres else None)


def _columns(classes, num_classes: int) -> int | None:
    """One column per class when classes are cycled (a class per column reads best)."""
    if isinstance(classes, list) and 1 < len(classes) <= 20:
        return len(classes)
    if classes == "balanced" and num_classes <= 20:
        return num_classes
    return None


def _run(job: SampleJob, producer, dist: Dist | None, on_progress, in_memory: bool) -> Samples:
    result = run_sample_job(job, producer, dist or Dist(device=producer.nets.device), on_progress=on_progress)
    samples = Samples(job.out, result)
    if in_memory and (dist is None or dist.is_main):
        images, labels = samples.load()
        samples = Samples(job.out, result, images, labels)
    return samples


def _with_output(run, out: str | Path | None) -> Samples:
    """Run to ``out``, or to a temporary file whose contents come back in memory."""
    if out is not None:
        return run(Path(out), False)
    with tempfile.TemporaryDirectory(prefix="adm-") as tmp:
        return run(Path(tmp) / "samples.npz", True)


@dataclass(frozen=True)
class SamplerChoice:
    """What the caller asked of the sampler; unset fields take the preset's defaults."""

    sampler: str | None = None
    steps: str | None = None
    spacing: str | None = None
    options: dict = field(default_factory=dict)
    eta: float | None = None
    scale: float | None = None
    guidance_interval: tuple[float, float] = (0.0, 1.0)
    threshold: float | None = None
    clip_denoised: bool | None = None
    precision: str | None = None
    compile: bool = False  # torch.compile the diffusion model (results may differ in the last bits)


@dataclass
class _Setup:
    """A loaded model with the preset defaults resolved: what sample() and upsample() share."""

    preset: Preset | None
    loaded: LoadedModel
    plan: SamplingPlan
    steps_rule: str

    def batch_size(self, requested: int | None) -> int:
        return _default(requested, self.preset.sampling.batch_size if self.preset else 16)

    warnings: tuple[str, ...] = ()


def _options(choice: SamplerChoice, preset: Preset | None, sampler: str) -> dict:
    options = dict(preset.sampling.options) if preset is not None and preset.sampling.sampler == sampler else {}
    options.update(choice.options)
    if choice.eta is not None:
        if "eta" in choice.options:
            raise UsageError("eta is given twice (--eta and --sampler-opt eta=...)", "give it once")
        options["eta"] = choice.eta
    return options


def _setup(
    source: ModelSource, registry: Registry | None, choice: SamplerChoice, *, upsampler: bool, device, download, dist,
    cascade: str | None = None,
    on_progress: ProgressFn | None = None,
    strength: float | None = None,
) -> _Setup:
    registry = registry or default_registry()
    preset = registry.preset(source.preset) if source.preset else None
    if preset is not None and preset.is_upsampler != upsampler:
        if upsampler:
            names = ", ".join(n for n, p in registry.presets.items() if p.is_upsampler)
            raise UsageError(f"{preset.name} is not an upsampler", f"upsampler presets: {names}")
        raise UsageError(f"{preset.name} is an upsampler", f"use `adm upsample --preset {preset.name} --base-samples ...`")
    scale = choice.scale
    if scale is None:
        scale = preset.classifier_scale if preset else (1.0 if source.classifier_flags else 0.0)
    guided = scale > 0
    if guided and source.classifier_flags is None and (preset is None or preset.classifier_flags is None):
        raise UsageError("a guidance scale > 0 needs a classifier", "pass classifier flags and checkpoint, or use scale 0")
    sampler = get_sampler(choice.sampler or (preset.sampling.sampler if preset else "ddpm"))
    source.check()
    weights = _run_weights(source) if source.run_dir is not None else _Weights(None, source.model_path)
    flags = weights.model_flags or (parse_model_flags(source.model_flags) if source.model_flags is not None else preset.model_flags)
    if upsampler and not isinstance(flags, SuperResFlags):
        raise UsageError("the model flags do not describe an upsampler (they need --large_size and --small_size)")
    if not upsampler and isinstance(flags, SuperResFlags):
        raise UsageError("these model flags describe an upsampler (--large_size/--small_size)",
                         "upsample low-resolution images with `adm upsample --model-flags ... --base-samples ...`")
    extra = tuple(_cascade_check(cascade, registry, flags).artifacts) if cascade is not None else ()
    _preflight(replace(source, model_path=weights.model_path), preset, guided, download, registry, extra)
    device = device if device is not None else (dist.device if dist else pick_device())
    loaded = _load(source, weights, with_classifier=guided, device=device, download=download, registry=registry,
                   on_progress=on_progress)
    steps, rule = _steps(loaded, preset, sampler, choice.steps)
    defaults = preset.sampling if preset else None
    settings = SamplerSettings.make(
        sampler=sampler.name, steps=steps, spacing=choice.spacing, options=_options(choice, preset, sampler.name),
        scale=scale, guidance_interval=choice.guidance_interval, threshold=choice.threshold,
        clip_denoised=_default(choice.clip_denoised, defaults.clip_denoised if defaults else True),
        precision=_precision(choice.precision, loaded),
    )
    top = None if strength is None else strength * (loaded.schedule.num_steps - 1)
    plan = settings.plan(loaded.schedule, max_timestep=top)  # validates before the networks are converted
    loaded.model = prepare(loaded.model, settings.precision, compile=choice.compile)
    if loaded.classifier is not None:
        loaded.classifier = prepare(loaded.classifier, settings.precision)
    return _Setup(preset, loaded, plan, rule, weights.warnings)


def _cascade_check(name: str, registry: Registry, base_flags) -> Preset:
    """The upsampler preset of a cascade, checked against the base model before any sampling."""
    upsampler = registry.preset(name)
    if not upsampler.is_upsampler:
        names = ", ".join(n for n, p in registry.presets.items() if p.is_upsampler)
        raise UsageError(f"--upsample {name} is not an upsampler preset", f"upsampler presets: {names}")
    if upsampler.model_flags.small_size != base_flags.image_size:
        raise UsageError(
            f"{name} upsamples {upsampler.model_flags.small_size}x{upsampler.model_flags.small_size} images, "
            f"the base model makes {base_flags.image_size}x{base_flags.image_size}",
            f"pick the upsampler for {base_flags.image_size}px samples",
        )
    return upsampler


def _warn(on_progress: ProgressFn | None, warnings, total: int) -> None:
    for warning in warnings:
        report(on_progress, "sampling", 0, total, unit="img", message=f"warning: {warning}")


def sample(
    preset: str | None = None,
    *,
    source: ModelSource | None = None,
    scale: float | None = None,
    sampler: str | None = None,
    steps: str | int | None = None,
    spacing: str | None = None,
    sampler_options: dict | None = None,
    eta: float | None = None,
    guidance_interval: tuple[float, float] = (0.0, 1.0),
    threshold: float | None = None,
    num_samples: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    classes: str | list[int] | None = None,
    clip_denoised: bool | None = None,
    precision: str | None = None,
    compile: bool = False,
    device=None,
    download: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    grid: int = 64,
    then_upsample: str | None = None,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    registry: Registry | None = None,
) -> Samples:
    """Sample ``num_samples`` images; with ``out`` they are written (resumably) to that npz.

    Unset options take the preset's defaults (scale, sampler and its options, steps, clipping,
    batch size, number of samples, class plan), else 16 samples with uniformly drawn labels,
    unguided, with the original's ancestral sampler over every step of the model's chain.
    ``steps`` counts network evaluations for the solvers (``dpm++2m``, ...) and is a respacing
    (``"250"``, ``"ddim25"``) for ``ddpm`` / ``ddim``. ``then_upsample`` names an upsampler
    preset to run on the samples afterwards (the cascade); its result is ``.upsampled``.
    """
    registry = registry or default_registry()
    source = source or ModelSource(preset=preset)
    choice = SamplerChoice(
        sampler, None if steps is None else str(steps), spacing, dict(sampler_options or {}), eta, scale,
        tuple(guidance_interval), threshold, clip_denoised, precision, compile,
    )
    setup = _setup(source, registry, choice, upsampler=False, device=device, download=download, dist=dist,
                   cascade=then_upsample, on_progress=on_progress)
    flags = setup.loaded.flags
    defaults = setup.preset.sampling if setup.preset else None
    num_samples = _default(num_samples, defaults.num_samples if defaults else 16)
    classes = _default(classes, defaults.classes if defaults else "random")
    if (flags.class_cond or setup.plan.settings.scale > 0) and isinstance(classes, str):
        classes = parse_classes(classes, flags.num_classes)
    _warn(on_progress, (*setup.warnings, *setup.plan.warnings), num_samples)

    def run(out: Path, in_memory: bool) -> Samples:
        job = SampleJob(
            out=out, num_samples=num_samples, batch_size=setup.batch_size(batch_size), seed=seed,
            plan=setup.plan, classes=classes, grid_size=grid,
            identity=_identity(setup.loaded), notes=_notes(setup), overwrite=overwrite,
        )
        producer = SampleProducer(_networks(setup.loaded), setup.plan, seed, classes, _columns(classes, flags.num_classes))
        base = _run(job, producer, dist, on_progress, in_memory)
        if then_upsample is None:
            return base
        up = upsample(
            then_upsample, base_samples=out, seed=seed, precision=precision, download=download,
            out=out.with_name(out.stem + "-up.npz"), overwrite=overwrite, grid=grid, dist=dist,
            on_progress=on_progress, registry=registry, device=device,
        )
        if in_memory:  # the temporary files are about to go: keep the arrays
            up = Samples(up.path, up.result, *up.load())
        return replace(base, upsampled=up)

    return _with_output(run, out)


def upsample(
    preset: str | None = None,
    *,
    base_samples: str | Path,
    source: ModelSource | None = None,
    sampler: str | None = None,
    steps: str | int | None = None,
    spacing: str | None = None,
    sampler_options: dict | None = None,
    eta: float | None = None,
    threshold: float | None = None,
    num_samples: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    clip_denoised: bool | None = None,
    precision: str | None = None,
    device=None,
    download: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    grid: int = 64,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    registry: Registry | None = None,
) -> Samples:
    """Upsample ``base_samples`` (npz with labels, or a folder of PNGs) with an upsampler (ADM-U)."""
    source = source or ModelSource(preset=preset)
    base = open_images(base_samples, name="base samples")
    labels = npz_labels(base_samples)
    choice = SamplerChoice(
        sampler, None if steps is None else str(steps), spacing, dict(sampler_options or {}), eta, 0.0,
        (0.0, 1.0), threshold, clip_denoised, precision,
    )
    setup = _setup(source, registry, choice, upsampler=True, device=device, download=download, dist=dist,
                   on_progress=on_progress)
    total = _default(num_samples, base.count)
    _warn(on_progress, (*setup.warnings, *setup.plan.warnings), total)

    def run(out: Path, in_memory: bool) -> Samples:
        job = SampleJob(
            out=out, num_samples=total, batch_size=setup.batch_size(batch_size), overwrite=overwrite,
            seed=seed, plan=setup.plan, grid_size=grid, notes=_notes(setup),
            identity={**_identity(setup.loaded), "base": weights_fingerprint(base_samples) if Path(base_samples).is_file()
                      else str(base_samples), "base_count": base.count},
        )
        producer = UpsampleProducer(_networks(setup.loaded), setup.plan, seed, base, labels, total)
        return _run(job, producer, dist, on_progress, in_memory)

    return _with_output(run, out)


def _fingerprint(path: str | Path) -> dict | list:
    """The content of an input file or folder (for the key: another input is another run)."""
    path = Path(path)
    if path.is_dir():
        from adm.data.images import list_images

        return [weights_fingerprint(p) for p in list_images(path)]
    return weights_fingerprint(path)


def edit(
    preset: str | None = None,
    *,
    inputs: str | Path,
    source: ModelSource | None = None,
    strength: float = 0.6,
    invert: bool = False,
    mask: str | Path | None = None,
    inpaint: str = "x0",
    jumps: int = 1,
    jump_length: int = 10,
    classes: str | list[int] | None = None,
    save_latents: str | Path | None = None,
    scale: float | None = None,
    sampler: str | None = None,
    steps: str | int | None = None,
    spacing: str | None = None,
    sampler_options: dict | None = None,
    eta: float | None = None,
    guidance_interval: tuple[float, float] = (0.0, 1.0),
    threshold: float | None = None,
    num_samples: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    clip_denoised: bool | None = None,
    precision: str | None = None,
    device=None,
    download: bool = False,
    out: str | Path | None = None,
    overwrite: bool = False,
    grid: int = 64,
    dist: Dist | None = None,
    on_progress: ProgressFn | None = None,
    registry: Registry | None = None,
) -> Samples:
    """Edit real images (a folder, or an npz with labels in ``arr_1``): see ``adm.sampling.edit``.

    ``strength`` in (0, 1] is how far they are noised (SDEdit); ``classes`` the target classes
    (default: the inputs' own labels, else the preset's plan); ``mask`` (white = keep) makes it
    inpainting; ``invert`` starts from their DDIM inversion (``sampler="ddim"``). Everything else is
    as in ``adm.sample``; outputs too (npz, a grid of input | mask | output, a sidecar).
    """
    from adm.sampling.edit import EditProducer, EditSettings, read_masks

    try:
        settings = EditSettings(strength=strength, invert=invert, inpaint=inpaint, jumps=jumps, jump_length=jump_length)
    except ValidationError as err:
        first = err.errors()[0]
        raise UsageError(f"bad value for --{str(first['loc'][0]).replace('_', '-')}: {first['msg']}") from None
    registry = registry or default_registry()
    source = source or ModelSource(preset=preset)
    collection = open_images(inputs, name="inputs")
    input_labels = npz_labels(inputs)
    masks = read_masks(mask, collection.count) if mask is not None else None
    if invert and sampler is None:
        sampler = "ddim"
    choice = SamplerChoice(sampler, None if steps is None else str(steps), spacing, dict(sampler_options or {}), eta,
                           scale, tuple(guidance_interval), threshold, clip_denoised, precision)
    setup = _setup(source, registry, choice, upsampler=False, device=device, download=download, dist=dist,
                   on_progress=on_progress, strength=settings.strength)
    flags = setup.loaded.flags
    total = _default(num_samples, collection.count)
    if total > collection.count:
        raise UsageError(f"asked for {total} edits of {collection.count} inputs")
    target = None
    plan_classes = _default(setup.preset.sampling.classes if setup.preset else None, "random")
    if classes is not None:
        parsed = parse_classes(classes, flags.num_classes) if isinstance(classes, str) else list(classes)
        if isinstance(parsed, list):
            target = np.array([parsed[i % len(parsed)] for i in range(collection.count)], dtype=np.int64)
        else:
            plan_classes = parsed
    if input_labels is not None and len(input_labels) < collection.count:
        raise UsageError(f"{inputs} has {collection.count} images but {len(input_labels)} labels")
    _warn(on_progress, (*setup.warnings, *setup.plan.warnings), total)

    def run(out: Path, in_memory: bool) -> Samples:
        extra = {"latents": Path(save_latents)} if save_latents is not None else {}
        job = SampleJob(
            out=out, num_samples=total, batch_size=setup.batch_size(batch_size), seed=seed, plan=setup.plan,
            classes=target.tolist() if target is not None else plan_classes, grid_size=grid, notes=_notes(setup),
            overwrite=overwrite, extra_outputs=extra,
            identity={**_identity(setup.loaded), "edit": settings.model_dump(), "inputs": _fingerprint(inputs),
                      "mask": _fingerprint(mask) if mask is not None else None},
        )
        producer = EditProducer(
            _networks(setup.loaded), setup.plan, seed, settings, collection.cropped(flags.image_size), input_labels,
            target, plan_classes, masks, keep_latents=save_latents is not None,
        )
        return _run(job, producer, dist, on_progress, in_memory)

    return _with_output(run, out)
