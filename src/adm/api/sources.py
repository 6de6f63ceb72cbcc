"""Where the networks of a run come from, checked before anything is built, and what identifies them.

A ``ModelSource`` is a preset, flags + a checkpoint, or a training run directory (for the
classifier too; ``runs/x@2000`` is that run's checkpoint of step 2000). ``resolve_weights`` decides
each network's flags and file once; ``preflight`` names every missing file at once;
``load_networks`` builds and loads them; ``identity`` is the content fingerprint of the weights
that goes into a run's key (a changed checkpoint is another run, never silently mixed into the
shards of the old one). ``resolve_guide``, ``load_guide`` and ``guide_identity`` do the same for
autoguidance's guide model (``--guide-model``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

from adm.api.models import LoadedModel, load_model
from adm.core.errors import MissingFileError, UsageError
from adm.core.progress import ProgressFn
from adm.core.suggest import did_you_mean
from adm.hub.fingerprint import file_fingerprint
from adm.presets import Preset, Registry
from adm.spec.flags import (
    ClassifierFlags,
    DiffusionFlags,
    ModelFlags,
    SuperResFlags,
    image_size,
    parse_flags,
    parse_model_flags,
)


@dataclass(frozen=True)
class ModelSource:
    """Where the networks come from: a preset, flags + checkpoint, or a training run directory.

    For a run directory (``runs/x``, or ``runs/x@STEP`` for the checkpoint of that step instead
    of the newest), ``weights`` picks the checkpoint's EMA (the slowest rate, or
    ``ema_rate``) or its raw model weights. A checkpoint given without flags (``model_path``,
    ``classifier_path``) takes the flags its run dir's ``config.json`` records. The guiding
    classifier is flags + checkpoint, a run dir of ``adm train-classifier``
    (``classifier_run_dir``: its newest checkpoint), or the preset's.
    """

    preset: str | None = None
    model_flags: str | dict | None = None
    model_path: Path | None = None
    run_dir: Path | None = None
    classifier_flags: str | dict | None = None
    classifier_path: Path | None = None
    weights: Literal["ema", "model"] = "ema"
    ema_rate: float | None = None
    classifier_run_dir: Path | None = None
    guide_model: str | None = None  # autoguidance: a preset, a run dir[@STEP] or a checkpoint (resolve_guide)
    guide_flags: str | dict | None = None  # the guide checkpoint's flags, when its run dir does not record them

    def check(self) -> None:
        named = sum(x is not None for x in (self.preset, self.model_flags, self.run_dir))
        if named > 1 or (named == 0 and self.model_path is None):
            raise UsageError("give exactly one of a preset, model flags or a run directory")
        if self.model_flags is not None and self.model_path is None:
            raise UsageError("model flags need a model checkpoint (--model-path)")
        if self.classifier_run_dir is not None and (self.classifier_flags is not None or self.classifier_path is not None):
            raise UsageError("--classifier-run-dir gives the classifier's flags and checkpoint",
                             "drop --classifier-flags / --classifier-path, or pass those instead of the run dir")
        if self.weights not in ("ema", "model"):
            raise UsageError(f"--weights must be ema or model, got {self.weights!r}")
        if self.run_dir is None and (self.weights != "ema" or self.ema_rate is not None):
            raise UsageError("--weights and --ema-rate choose the weights of a --run-dir")


@dataclass(frozen=True)
class Weights:
    """Each network's flags and weights file, decided from a source before anything is loaded.

    ``None`` files are the preset's downloads; ``classifier_flags`` is None when there is no
    classifier.
    """

    model_flags: ModelFlags | SuperResFlags
    model_path: Path | None
    classifier_flags: ClassifierFlags | None = None
    classifier_path: Path | None = None
    warnings: tuple[str, ...] = ()
    classifier_noise: DiffusionFlags | None = None  # what the classifier was trained on, where recorded
    sampler_defaults: dict[str, dict[str, Any]] = field(default_factory=dict)  # a run's, by sampler (its task's)

    def check_guidance(self) -> None:
        """A model with continuous noise levels reads a classifier's time through the classifier's own
        training schedule: without it, guidance cannot map σ to the classifier's t."""
        if self.model_flags.is_karras and self.classifier_noise is None:
            raise UsageError("classifier guidance of an EDM or consistency model needs the noising process the "
                             "classifier was trained on",
                             "guide with a classifier run dir (--classifier-run-dir records it) or a preset that "
                             "pairs them (edm-imagenet64)")


def resolve_weights(source: ModelSource, preset: Preset | None = None) -> Weights:
    """The flags and weights file of each network (a run dir's newest checkpoint), with warnings.

    Flags come from, first to last: the flags given, the run dir, the preset, the ``config.json``
    of the run dir a checkpoint sits in.
    """
    model_flags, model_path, warnings, defaults = _model_weights(source, preset)
    classifier_flags, classifier_path, noise = _classifier_weights(source, preset)
    if classifier_flags is not None and classifier_flags.classifier_in_channels != model_flags.in_channels:
        raise UsageError(f"the classifier reads {classifier_flags.classifier_in_channels}-channel images, the model "
                         f"makes {model_flags.in_channels}-channel ones", "guide with a classifier of the model's data")
    if noise is not None and classifier_flags is not None and not model_flags.is_karras:
        warnings += _noise_mismatch(noise, model_flags, classifier_path)
    noise_flags = parse_flags(DiffusionFlags, noise) if noise is not None and classifier_flags is not None else None
    return Weights(model_flags, model_path, classifier_flags, classifier_path, tuple(warnings), noise_flags, defaults)


def _model_weights(source: ModelSource, preset: Preset | None) -> tuple[ModelFlags | SuperResFlags, Path | None, list[str], dict]:
    """(flags, weights file, warnings, sampler defaults of the run that trained it)."""
    if source.model_flags is not None:
        return parse_model_flags(source.model_flags), source.model_path, [], {}
    if preset is not None:
        return preset.model_flags, source.model_path, [], {}
    if source.run_dir is None:
        return _recorded(source.model_path, "diffusion")[0], source.model_path, [], {}
    from adm.training.rundir import read_run

    run = read_run(source.run_dir)
    if not run.task.generator:
        raise UsageError(f"{source.run_dir} is a {run.task.trains}, not a diffusion model", _no_generator_hint(run))
    weights = run.weights(source.weights, rate=source.ema_rate)
    return (run.flags, source.model_path or weights, _ema_warnings(run, source.weights, source.ema_rate),
            run.task.sampler_defaults(run.doc))


def _no_generator_hint(run) -> str:
    """What to do with a run whose kind yields nothing to sample (its task's ``generator``)."""
    if run.task.flags == "classifier":
        return "sample a diffusion run; guide it with this classifier via --classifier-run-dir"
    return f"a {run.kind} run yields no generator to sample: sample a diffusion run (adm train)"


def ema_is_young(rate: float, step: int) -> bool:
    """An EMA that still weighs its starting weights by more than half (rate^step > 0.5): its
    samples look like the start (noise) although the raw weights have learned."""
    return rate**step > 0.5


def _ema_warnings(run, weights: str, ema_rate: float | None, whose: str = "",
                  how: str = "sample the raw weights with --weights model, or a faster EMA with --ema-rate") -> list[str]:
    """Right after a short run, the slow EMA is still mostly the initial weights: say how to choose."""
    if weights != "ema" or not run.emas:
        return []
    rates = sorted(run.emas)
    rate, step = (ema_rate or rates[-1]), run.step
    if not ema_is_young(rate, step):
        return []
    return [
        f"{whose}the EMA of rate {rate:g} at step {step} still weighs the initial weights by {rate**step:.1%}; "
        f"{how} (this run has: {', '.join(f'{r:g}' for r in rates)})"
    ]


def _classifier_weights(source: ModelSource, preset: Preset | None) -> tuple[ClassifierFlags | None, Path | None, dict | None]:
    """(flags, file, the noising process it was trained on when a run dir records it)."""
    if source.classifier_flags is not None:
        return parse_flags(ClassifierFlags, source.classifier_flags), source.classifier_path, None
    if source.classifier_run_dir is not None:
        from adm.training.rundir import read_run

        run = read_run(source.classifier_run_dir)
        if run.task.flags != "classifier":
            raise UsageError(f"{source.classifier_run_dir} is a {run.kind} run, not a classifier (adm train-classifier)",
                             "sample it with --run-dir; guide with a run of adm train-classifier"
                             if run.task.generator else "guide with a run of adm train-classifier")
        return run.flags, run.weights(), run.doc.get("diffusion_flags")
    if preset is not None and preset.classifier_flags is not None:
        noise = parse_flags(DiffusionFlags, preset.classifier_noise).flag_dict() if preset.classifier_noise else None
        return preset.classifier_flags, source.classifier_path, noise
    if source.classifier_path is None:
        return None, None, None
    flags, noise = _recorded(source.classifier_path, "classifier")
    return flags, source.classifier_path, noise


_OPTIONS = {"diffusion": ("--model-path", "--model-flags"), "classifier": ("--classifier-path", "--classifier-flags"),
            "guide": ("--guide-model", "--guide-flags")}


def _recorded(checkpoint: Path, kind: str, options: str | None = None) -> tuple[Any, dict | None]:
    """(flags, the noising process a classifier was trained on) that the ``config.json`` of the run
    dir a checkpoint given without flags sits in records (``options``: whose options errors name).

    ``kind`` is the role the checkpoint plays: ``"diffusion"``, a generator (a run of any task that
    yields one), or ``"classifier"`` (a run of a task recording classifier flags)."""
    from adm.training.rundir import CONFIG, read_run_config, run_flags, task_of

    path_option, flags_option = _OPTIONS[options or kind]
    folder = Path(checkpoint).parent
    if not (folder / CONFIG).is_file():
        raise UsageError(f"{path_option} needs {flags_option} for a checkpoint outside a run dir (no {folder / CONFIG})",
                         f"pass {flags_option} in the original syntax, or a checkpoint of an adm run dir")
    doc = read_run_config(folder)
    task = task_of(doc)
    if not (task.generator if kind == "diffusion" else task.flags == kind):
        raise UsageError(f"{checkpoint} is a checkpoint of a {doc['kind']} run ({folder / CONFIG}), not of a {kind} run",
                         f"pass {flags_option} for it, or a checkpoint of the right kind")
    return run_flags(doc), doc.get("diffusion_flags")


def _noise_mismatch(noise: dict, model: ModelFlags | SuperResFlags, classifier_path: Path | None) -> list[str]:
    """A classifier trained on another noising process reads the model's timesteps as other noise levels."""
    trained = parse_flags(DiffusionFlags, noise)
    mine = (model.noise_schedule, model.diffusion_steps, model.rescale_timesteps)
    theirs = (trained.noise_schedule, trained.diffusion_steps, trained.rescale_timesteps)
    if mine == theirs:
        return []
    return [
        f"the classifier {classifier_path} was trained on the {theirs[0]} schedule of {theirs[1]} steps"
        f"{' (rescaled timesteps)' if theirs[2] else ''}, the model uses the {mine[0]} schedule of {mine[1]}"
        f"{' (rescaled timesteps)' if mine[2] else ''}: guidance will read the noise levels wrong"
    ]


def preflight(weights: Weights, preset: Preset | None, guided: bool, download: bool, registry: Registry,
              extra: tuple[str, ...] = ()) -> None:
    """Name every missing input file in one message, before any network is built."""
    from adm.hub.download import ensure_artifact

    missing = [str(p) for p in (weights.model_path, weights.classifier_path if guided else None) if p and not Path(p).is_file()]
    artifacts = []
    if preset is not None:
        if weights.model_path is None and preset.checkpoint:
            artifacts.append(preset.checkpoint)
        if guided and weights.classifier_path is None and preset.classifier_checkpoint:
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


def load_networks(weights: Weights, preset: Preset | None, *, with_classifier: bool, device, download: bool,
                  registry: Registry, on_progress: ProgressFn | None = None) -> LoadedModel:
    """The networks, ready to sample: the classifier frozen (guidance needs ∇_x only)."""
    loaded = load_model(
        preset, model_flags=weights.model_flags, checkpoint=weights.model_path,
        classifier_flags=weights.classifier_flags, classifier_checkpoint=weights.classifier_path,
        with_classifier=with_classifier, device=device, download=download, registry=registry,
        on_progress=on_progress,
    )
    if loaded.classifier is not None:
        loaded.classifier.requires_grad_(False)
        loaded.classifier_noise = weights.classifier_noise
    return loaded


def identity(loaded: LoadedModel) -> dict:
    """What made the images: the architecture and the exact weights (content fingerprints)."""
    found = {
        "model": loaded.preset.name if loaded.preset else loaded.flags.model_dump(),
        "model_weights": file_fingerprint(loaded.checkpoint),
    }
    if loaded.classifier is not None:
        found["classifier_weights"] = file_fingerprint(loaded.classifier_checkpoint)
    return found


class Guide(NamedTuple):
    """Autoguidance's guide model, decided before anything is loaded (``resolve_guide``)."""

    flags: ModelFlags | SuperResFlags
    path: Path | None  # the weights file; None: the preset's checkpoint artifact (a download)
    preset: Preset | None = None
    warnings: tuple[str, ...] = ()

    @property
    def artifacts(self) -> tuple[str, ...]:
        """The artifacts it needs downloaded (for ``preflight(extra=...)``)."""
        if self.path is None and self.preset is not None and self.preset.checkpoint:
            return (self.preset.checkpoint,)
        return ()


def resolve_guide(spec: str | Path, flags: str | dict | None = None, *, registry: Registry,
                  main_flags: ModelFlags | SuperResFlags, weights: Literal["ema", "model"] = "ema",
                  ema_rate: float | None = None) -> Guide:
    """``--guide-model SPEC`` (``flags``: ``--guide-flags``): the weaker model autoguidance guides with.

    ``spec`` is, tried in this order: a checkpoint file (its flags from ``flags``, else from the
    ``config.json`` of the run dir it sits in, as for ``--model-path``); a run dir, ``runs/x`` or
    ``runs/x@2000`` for that step's checkpoint (its EMA of the slowest rate, or ``ema_rate``, or
    with ``weights="model"`` the raw weights); a preset name (its flags and checkpoint artifact).
    A file or folder on disk wins over a preset of the same name.

    The guide must be conditioned as ``main_flags`` is: same kind (base model or upsampler, and
    the same low-res size), image size, ``class_cond``, ``num_classes`` and ``null_class``; a
    difference is a one-line error naming it. Its architecture and training length may differ:
    a smaller or less-trained version of the main model is what autoguidance wants.
    """
    text = str(spec)
    path = Path(text)
    if path.is_file():
        guide_flags = parse_model_flags(flags) if flags is not None else _recorded(path, "diffusion", "guide")[0]
        guide = Guide(guide_flags, path)
    elif path.is_dir() or "@" in path.name:
        _no_guide_flags(flags, f"the run dir {spec}")
        guide = _guide_run(text, weights, ema_rate)
    elif text in registry.presets:
        _no_guide_flags(flags, f"the preset {text}")
        preset = registry.preset(text)
        guide = Guide(preset.model_flags, None, preset)
    else:
        raise UsageError(f"--guide-model {spec} is not a checkpoint file, a run dir or a preset",
                         did_you_mean(text, registry.presets, "adm presets"))
    check_guide_conditioning(main_flags, guide.flags, text)
    return guide


def _no_guide_flags(flags: str | dict | None, what: str) -> None:
    if flags is not None:
        raise UsageError(f"--guide-flags are for a checkpoint file: {what} brings its own flags", "drop --guide-flags")


def _guide_run(run_dir: str, weights: Literal["ema", "model"], ema_rate: float | None) -> Guide:
    from adm.training.rundir import read_run

    run = read_run(run_dir)
    if not run.task.generator:
        raise UsageError(f"--guide-model {run_dir} is a {run.kind} run, not a diffusion model",
                         "guide with a diffusion run dir (adm train), a checkpoint or a preset")
    warnings = _ema_warnings(run, weights, ema_rate, "the guide model: ",
                             "guide with its raw weights or a faster EMA")
    return Guide(run.flags, run.weights(weights, rate=ema_rate), None, tuple(warnings))


def _conditioning(flags: ModelFlags | SuperResFlags) -> dict[str, Any]:
    """What a model is conditioned on: what its guide must share for their outputs to be mixed."""
    is_sr = isinstance(flags, SuperResFlags)
    return {
        "kind": "an upsampler" if is_sr else "a base model",
        "image size": image_size(flags),
        "channels": flags.in_channels,
        "low-res size": flags.small_size if is_sr else None,
        "class_cond": flags.class_cond,
        "num_classes": flags.num_classes if flags.class_cond else None,
        "null_class": flags.null_class,
    }


def check_guide_conditioning(main: ModelFlags | SuperResFlags, guide: ModelFlags | SuperResFlags, name: str) -> None:
    """A one-line error naming the first way the guide ``name`` is conditioned otherwise than the model."""
    ours, theirs = _conditioning(main), _conditioning(guide)
    for what, value in ours.items():
        if theirs[what] == value:
            continue
        if what == "kind":
            message = f"the guide model {name} is {theirs[what]}, the model {value}"
        else:
            message = f"the guide model {name} has {what} {theirs[what]}, the model {value}"
        raise UsageError(message, "autoguidance needs a guide conditioned as the model is (a smaller or earlier version of it)")


def load_guide(guide: Guide, *, device, download: bool, registry: Registry,
               on_progress: ProgressFn | None = None) -> LoadedModel:
    """The guide network, ready to sample (no classifier)."""
    return load_model(guide.preset, model_flags=guide.flags, checkpoint=guide.path, with_classifier=False,
                      device=device, download=download, registry=registry, on_progress=on_progress)


def guide_identity(loaded: LoadedModel) -> dict:
    """The guide's part of a run's key: its architecture and the exact weights (as ``identity``)."""
    return {
        "guide_model": loaded.preset.name if loaded.preset else loaded.flags.model_dump(),
        "guide_weights": file_fingerprint(loaded.checkpoint),
    }


def content_fingerprint(path: str | Path) -> dict:
    """The content of an input file or folder (for the key: another input is another run).

    A folder is one digest over its images' fingerprints in listing order: changing, adding or
    removing an image changes it, moving or renaming the folder does not (as for weights), and
    the key stays one short entry however many images the folder holds.
    """
    path = Path(path)
    if not path.is_dir():
        return file_fingerprint(path)
    from adm.data.images import list_images

    digest = hashlib.sha256()
    files = list_images(path)
    for image in files:
        found = file_fingerprint(image)
        digest.update(f"{found['size']} {found.get('sha256') or found.get('sha256-sampled')}\n".encode())
    return {"file": f"{path.name}/", "images": len(files), "sha256": digest.hexdigest()}
