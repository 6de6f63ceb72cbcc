"""``adm.distill``: a one- or two-step student of any model adm can sample (consistency distillation).

The teacher is any source ``adm sample`` takes (a preset, a run dir ``runs/x[@STEP]``, or a
checkpoint with its flags), with its guidance set as for ``adm sample`` (``scale``, ``cfg_scale``,
``autoguidance`` with a ``guide_model``, intervals, thresholding); ``adm.api.setup.resolve`` loads
and converts it once, exactly as ``adm sample`` would. Its ODE step between two adjacent levels is
one step of an adm solver (``teacher_solver``) on a 2-level grid, run with the teacher's guided
``Denoiser``, so the student learns the guided sampler, classifier and all, and runs without it.
The loss, the student and the run are ``adm.training.distill``'s; the run bookkeeping (resume,
torchrun, precision, EMAs, signals, checkpoints) is ``adm train``'s.

The run dir's ``config.json`` records the teacher (``teacher``: where it came from, its flags,
the fingerprints of its weights and of its classifier's and guide's, its guidance and solver).
Calling ``distill`` again continues the run: values not given are the saved ones (the teacher
too), and a different teacher is refused.

>>> import adm
>>> adm.distill("digits", run_dir="runs/digits-cm", data="digits.npz", sigma_max=10, iterations=2000)
>>> adm.sample(source=adm.ModelSource(run_dir="runs/digits-cm"), sampler="cm", steps=1)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adm.api.options import SamplingOptions, refuse_leftovers
from adm.core.errors import UsageError
from adm.core.suggest import did_you_mean
from adm.core.validation import validated
from adm.training.config import renamed_options
from adm.training.distill_config import KIND, DistillConfig
from adm.training.tasks import get_task

if TYPE_CHECKING:  # the rest imports torch: loaded when a distillation runs, not by `adm --help`
    import torch

    from adm.api.setup import Setup
    from adm.api.sources import ModelSource
    from adm.core.distributed import Dist
    from adm.core.progress import ProgressFn
    from adm.presets import Registry
    from adm.sampling.batches import Networks
    from adm.sampling.settings import SamplingPlan
    from adm.training.data import LabelledImages
    from adm.training.distill import TeacherStep
    from adm.training.engine import TrainResult

__all__ = ["DistillConfig", "ResolvedDistill", "distill", "resolve_distill"]

# The teacher's guidance and x̂₀ correction: the sampling options a distillation takes (the solver
# is --teacher-solver, the precision the training's).
GUIDANCE_FIELDS = ("scale", "guidance_interval", "cfg_scale", "cfg_interval", "autoguidance", "autoguidance_interval",
                   "guidance", "threshold", "clip_denoised")
# --teacher-solver names that are an adm sampler with options: Euler is DPM-Solver++(2M) of order 1
# (on a 2-level grid every multistep solver's single step is first order: Euler/DDIM)
SOLVER_ALIASES: dict[str, tuple[str, dict[str, Any]]] = {"euler": ("dpm++2m", {"order": 1})}
SOURCE_FIELDS = ("preset", "model_flags", "model_path", "run_dir", "classifier_flags", "classifier_path", "weights",
                 "ema_rate", "classifier_run_dir", "guide_model", "guide_flags")


# --------------------------------------------------------------------------------------------
# Where the teacher comes from


def teacher_source(teacher: str | Path | None = None, *, teacher_path: str | Path | None = None,
                   teacher_flags: str | dict | None = None, teacher_weights: str = "ema",
                   teacher_ema_rate: float | None = None, classifier_flags: str | dict | None = None,
                   classifier_path: str | Path | None = None, classifier_run_dir: str | Path | None = None,
                   guide_model: str | None = None, guide_flags: str | dict | None = None,
                   registry: Registry) -> ModelSource | None:
    """The teacher as a ``ModelSource`` (None: none given). ``teacher`` is a run dir (``runs/x``,
    ``runs/x@2000``; a folder wins over a preset of the same name) or a preset; ``teacher_path`` a
    checkpoint (its flags ``teacher_flags``, else its run dir's ``config.json``)."""
    from adm.api.sources import ModelSource

    extra = dict(classifier_flags=classifier_flags, classifier_path=_path(classifier_path),
                 classifier_run_dir=_path(classifier_run_dir), guide_model=guide_model, guide_flags=guide_flags)
    if teacher is not None and teacher_path is not None:
        raise UsageError("give the teacher once: --teacher (a preset or run dir) or --teacher-path (a checkpoint)")
    if teacher is not None and Path(teacher).is_file():  # a checkpoint named by --teacher
        teacher, teacher_path = None, teacher
    if teacher_flags is not None and teacher_path is None:
        raise UsageError("--teacher-flags are the flags of a --teacher-path checkpoint", "pass the checkpoint too")
    if teacher_path is not None:
        return ModelSource(model_flags=teacher_flags, model_path=Path(teacher_path), **extra)
    if teacher is None:
        if any(v is not None for v in extra.values()):
            raise UsageError("classifier and guide options belong to a teacher", "pass --teacher or --teacher-path")
        return None
    text, path = str(teacher), Path(teacher)
    if path.is_dir() or ("@" in path.name and text not in registry.presets):
        return ModelSource(run_dir=path, weights=teacher_weights, ema_rate=teacher_ema_rate, **extra)
    if text in registry.presets:
        if teacher_weights != "ema" or teacher_ema_rate is not None:
            raise UsageError("--teacher-weights and --teacher-ema-rate choose the weights of a run dir teacher")
        return ModelSource(preset=text, **extra)
    raise UsageError(f"--teacher {text} is not a preset, a run dir or a checkpoint file",
                     did_you_mean(text, registry.presets, "adm presets"))


def _path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def source_record(source: ModelSource) -> dict[str, Any]:
    """What the run dir records of where the teacher came from (resolved again to continue)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(source).items() if v is not None}


def source_from_record(record: Mapping[str, Any]) -> ModelSource:
    from adm.api.sources import ModelSource

    paths = ("model_path", "run_dir", "classifier_path", "classifier_run_dir")
    return ModelSource(**{k: (Path(v) if k in paths else v) for k, v in record.items() if k in SOURCE_FIELDS})


# --------------------------------------------------------------------------------------------
# The teacher's step


def solver_choice(name: str) -> tuple[str, dict[str, Any]]:
    """(adm sampler, its options) of ``--teacher-solver``: a deterministic solver of the ODE."""
    from adm.sampling.registry import get_sampler

    sampler, options = SOLVER_ALIASES.get(name, (name, {}))
    spec = get_sampler(sampler)
    if spec.stochastic or spec.chain_only or spec.grid is not None:
        raise UsageError(f"--teacher-solver {name} is not a deterministic ODE solver",
                         "use heun, euler or a solver such as dpm++2m")
    return sampler, options


def teacher_step(nets: Networks, plan: SamplingPlan, solver: str) -> TeacherStep:
    """x at σ → x at σ_next: one step of ``solver`` on the grid (σ, σ_next) with the teacher's
    guided denoiser (``nets`` and ``plan`` as ``adm sample`` resolves them)."""
    import torch

    from adm.sampling.denoiser import Denoiser
    from adm.sampling.precision import network_call
    from adm.sampling.run import build_guidance

    settings = plan.settings
    options = plan.spec.parse_options(solver_choice(solver)[1])
    model = network_call(nets.model, nets.device, settings.precision)

    def step(x: torch.Tensor, sigma: float, sigma_next: float, labels: torch.Tensor | None) -> torch.Tensor:
        labels = None if labels is None else labels.to(nets.device)
        guidance = build_guidance(plan, nets.schedule, nets.guidance_context(settings, labels))
        kwargs = {"y": labels} if nets.class_cond else {}
        denoiser = Denoiser(model, nets.schedule, nets.adapter, kwargs, guidance, settings.clip_denoised,
                            settings.threshold)
        grid = torch.tensor([sigma, sigma_next], dtype=torch.float64)
        out = plan.spec(denoiser, denoiser.to_state(x, sigma), grid, noise=None, options=options)
        return denoiser.from_state(out, sigma_next)

    return step


def teacher_record(source: ModelSource, guidance: dict[str, Any], setup: Setup) -> dict[str, Any]:
    """The run dir's ``teacher``: where it came from, the guidance asked for, its flags, what its
    weights are (fingerprints) and the guidance it runs with (scales and intervals resolved)."""
    settings = setup.plan.settings
    return {
        "source": source_record(source),
        "options": guidance,
        "model_flags": setup.loaded.flags.flag_dict(),
        **setup.identity(),
        "guidance": [{"method": name, "scale": scale, "interval": list(interval)}
                     for name, scale, interval in settings.methods()],
        "clip_denoised": settings.clip_denoised,
        "threshold": settings.threshold,
    }


IDENTITY = ("model_weights", "classifier_weights", "guide_weights", "guidance", "clip_denoised", "threshold")


def _same_teacher(saved: Mapping[str, Any], record: Mapping[str, Any], run_dir: Path) -> None:
    """A run continues only with the teacher it was distilled from (same weights, same guidance)."""
    for key in IDENTITY:
        before, after = saved.get(key), record.get(key)
        if isinstance(before, dict) and isinstance(after, dict):  # a fingerprint: the file may have moved
            before, after = {k: v for k, v in before.items() if k != "file"}, {k: v for k, v in after.items() if k != "file"}
        if before != after:
            raise UsageError(f"{run_dir} was distilled from another teacher ({key} differs)",
                             "continue with the same teacher and guidance, or use another --run-dir")


# --------------------------------------------------------------------------------------------
# The run


@dataclass
class ResolvedDistill:
    """A distillation with every layer applied and the teacher loaded: what ``--dry-run`` prints
    (``document``) and what ``start`` trains."""

    run_dir: Path
    config: DistillConfig
    flags: Any  # the student's ModelFlags
    document: dict[str, Any]
    setup: Setup
    step: TeacherStep
    data: LabelledImages

    def start(self, *, dist: Dist | None = None, on_progress: ProgressFn | None = None,
              resume: bool = False) -> TrainResult:
        from adm.api.monitors import run_monitors
        from adm.training.distill import fit_distill
        from adm.training.monitor import watching

        with watching(run_monitors):  # --sample-every, --eval-every: as adm train
            return fit_distill(self.config, self.flags, self.run_dir, self.step, doc=self.document, source=self.data,
                               init=self.config.init or self.setup.loaded.checkpoint, dist=dist, on_progress=on_progress,
                               resume=resume)


def _saved(run_dir: Path) -> dict[str, Any] | None:
    """The run dir's ``config.json`` when it holds a distillation to continue (another kind is
    refused by ``open_run`` before anything is written)."""
    from adm.training.rundir import newest_checkpoint, read_run_config

    if newest_checkpoint(run_dir) is None:
        return None
    doc = read_run_config(run_dir)
    return doc if doc["kind"] == KIND else None


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(DistillConfig values, the teacher's guidance options); anything else is refused by name."""
    options = renamed_options({k: (str(v) if isinstance(v, Path) else v) for k, v in options.items() if v is not None})
    mine = {k: options.pop(k) for k in list(options) if k in DistillConfig.model_fields}
    guidance = {k: options.pop(k) for k in list(options) if k in GUIDANCE_FIELDS}
    sampling = [k for k in options if k in SamplingOptions.model_fields]
    if sampling:
        raise UsageError(f"{sampling[0]} is a sampling option: the teacher's step is --teacher-solver, on the "
                         "distillation's grid (--scales, --sigma-max)", "drop it")
    refuse_leftovers(options, "distill", DistillConfig, SamplingOptions)
    return mine, guidance


def resolve_distill(teacher: str | Path | None = None, *, run_dir: str | Path, teacher_path: str | Path | None = None,
                    teacher_flags: str | dict | None = None, teacher_weights: str = "ema",
                    teacher_ema_rate: float | None = None, classifier_flags: str | dict | None = None,
                    classifier_path: str | Path | None = None, classifier_run_dir: str | Path | None = None,
                    guide_model: str | None = None, guide_flags: str | dict | None = None,
                    device: str | torch.device | None = None, download: bool = False, dist: Dist | None = None,
                    on_progress: ProgressFn | None = None, registry: Registry | None = None,
                    **options: Any) -> ResolvedDistill:
    """Apply the layers (the config's defaults < the run being continued < what is given), load
    the teacher as ``adm sample`` would, and decide the student; nothing is written."""
    from adm.api.setup import resolve
    from adm.core.progress import report
    from adm.presets import default_registry
    from adm.training.distill import distill_run_config, open_distill_data, student_flags

    registry = registry or default_registry()
    run_dir = Path(run_dir)
    values, guidance = _split(options)
    saved = _saved(run_dir)
    source = teacher_source(teacher, teacher_path=teacher_path, teacher_flags=teacher_flags,
                            teacher_weights=teacher_weights, teacher_ema_rate=teacher_ema_rate,
                            classifier_flags=classifier_flags, classifier_path=classifier_path,
                            classifier_run_dir=classifier_run_dir, guide_model=guide_model, guide_flags=guide_flags,
                            registry=registry)
    if saved is not None:
        values = {**renamed_options(saved["train"]), **values}
        guidance = {**(saved["teacher"].get("options") or {}), **guidance}
        source = source or source_from_record(saved["teacher"]["source"])
    if source is None:
        raise UsageError("no teacher given", "pass --teacher (a preset or a run dir) or --teacher-path with "
                         "--teacher-flags")
    if "data" not in values:
        raise UsageError("no training data given", "pass --data: the teacher's training images (a folder or an npz)")
    config = get_task(KIND).make_config(values)
    sampler, _ = solver_choice(config.teacher_solver)
    choice = validated(SamplingOptions, {**guidance, "sampler": sampler, "precision": config.precision})
    setup = resolve(source, choice, registry, upsampler=False, device=device, download=download, dist=dist,
                    on_progress=on_progress)
    for warning in setup.warnings:  # the teacher's weights and precision, as adm sample says them
        report(on_progress, "distill", 0, config.iterations, "step", message=f"warning: the teacher: {warning}")
    record = teacher_record(source, validated(SamplingOptions, guidance).model_dump(mode="json", exclude_unset=True),
                            setup)
    if saved is not None:
        _same_teacher(saved["teacher"], record, run_dir)
    flags = student_flags(setup.loaded.flags, config)
    data = open_distill_data(flags, config, setup.plan.needs_labels(flags.class_cond), setup.num_classes)
    return ResolvedDistill(run_dir, config, flags, distill_run_config(flags, config, record), setup,
                           teacher_step(setup.networks(), setup.plan, config.teacher_solver), data)


def distill(teacher: str | Path | None = None, *, run_dir: str | Path, resume: bool = False,
            dist: Dist | None = None, on_progress: ProgressFn | None = None, **options: Any) -> TrainResult:
    """Distil ``teacher`` (a preset or a run dir; or ``teacher_path`` + ``teacher_flags``) into a
    consistency model in ``run_dir``; calling it again continues the run.

    ``options``: the teacher's source (``teacher_path``, ``teacher_flags``, ``teacher_weights``,
    ``teacher_ema_rate``, ``classifier_*``, ``guide_model``, ``guide_flags``), its guidance as for
    ``adm.sample`` (``scale``, ``cfg_scale``, ``autoguidance``, intervals, ``threshold``,
    ``clip_denoised``; unset: the preset's), ``DistillConfig`` fields (``data=``, ``iterations=``,
    ``batch_size=``, ``sigma_max=``, ``scales=``, ``teacher_solver=``, ...), ``device``,
    ``download`` and ``registry``.
    """
    from adm.core.distributed import Dist

    dist = dist or Dist()
    run = resolve_distill(teacher, run_dir=run_dir, dist=dist, on_progress=on_progress, **options)
    return run.start(dist=dist, on_progress=on_progress, resume=resume)
