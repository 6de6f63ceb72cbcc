"""Where the networks of a run come from, checked before anything is built, and what identifies them.

A ``ModelSource`` is a preset, flags + a checkpoint, or a training run directory. ``preflight``
names every missing file at once; ``load_networks`` builds and loads them; ``identity`` is the
content fingerprint of the weights that goes into a run's key (a changed checkpoint is another
run, never silently mixed into the shards of the old one).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from adm.api.models import LoadedModel, load_model
from adm.core.errors import MissingFileError, UsageError
from adm.core.progress import ProgressFn
from adm.hub.fingerprint import weights_fingerprint
from adm.presets import Preset, Registry
from adm.spec.flags import ModelFlags, SuperResFlags


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
        if self.weights not in ("ema", "model"):
            raise UsageError(f"--weights must be ema or model, got {self.weights!r}")
        if self.run_dir is None and (self.weights != "ema" or self.ema_rate is not None):
            raise UsageError("--weights and --ema-rate choose the weights of a --run-dir")


@dataclass(frozen=True)
class Weights:
    """The network flags and weights file resolved from a source, before anything is loaded."""

    model_flags: ModelFlags | SuperResFlags | None
    model_path: Path | None
    warnings: tuple[str, ...] = ()


def resolve_weights(source: ModelSource) -> Weights:
    """The flags and weights file of a source (a run dir's newest checkpoint), with its warnings."""
    if source.run_dir is None:
        return Weights(None, source.model_path)
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
    return Weights(flags, source.model_path or weights, tuple(warnings))


def preflight(source: ModelSource, preset: Preset | None, guided: bool, download: bool, registry: Registry,
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


def load_networks(source: ModelSource, weights: Weights, preset: Preset | None, *, with_classifier: bool, device,
                  download: bool, registry: Registry, on_progress: ProgressFn | None = None) -> LoadedModel:
    """The networks, ready to sample: the classifier frozen (guidance needs ∇_x only)."""
    loaded = load_model(
        preset, model_flags=weights.model_flags or source.model_flags, checkpoint=weights.model_path,
        classifier_flags=source.classifier_flags, classifier_checkpoint=source.classifier_path,
        with_classifier=with_classifier, device=device, download=download, registry=registry,
        on_progress=on_progress,
    )
    if loaded.classifier is not None:
        loaded.classifier.requires_grad_(False)
    return loaded


def identity(loaded: LoadedModel) -> dict:
    """What made the images: the architecture and the exact weights (content fingerprints)."""
    found = {
        "model": loaded.preset.name if loaded.preset else loaded.flags.model_dump(),
        "model_weights": weights_fingerprint(loaded.checkpoint),
    }
    if loaded.classifier is not None:
        found["classifier_weights"] = weights_fingerprint(loaded.classifier_checkpoint)
    return found


def content_fingerprint(path: str | Path) -> dict | list:
    """The content of an input file or folder (for the key: another input is another run)."""
    path = Path(path)
    if path.is_dir():
        from adm.data.images import list_images

        return [weights_fingerprint(p) for p in list_images(path)]
    return weights_fingerprint(path)
