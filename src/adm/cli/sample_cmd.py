"""`adm sample` and `adm upsample`: options in, ``adm.api.generation`` does it, say where files went.

The sampling and run options are generated from the API's ``SamplingOptions`` and
``RunOptions`` (``sampling_options`` / ``run_options`` below), so the three image commands and
the Python API share one list; each command declares only what is its own. The API's sampling
modules (torch) are imported when a command runs, not to build its options.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from adm.api.options import RunOptions, SamplingOptions
from adm.cli.common import console, guarded
from adm.cli.config_options import Rename, config_options
from adm.cli.progress import RichProgress
from adm.core.errors import UsageError

if TYPE_CHECKING:
    from adm.api.generation import Samples

PRESET = typer.Option(None, "--preset", "-p", help="Named preset (`adm presets` lists them).")
MODEL_FLAGS = typer.Option(None, "--model-flags", help='Model flags in the original syntax, e.g. "--image_size 64 ..." (instead of --preset).')
MODEL_PATH = typer.Option(None, "--model-path", help="Model checkpoint (.pt/.safetensors); default: the preset's download.")
CLASSIFIER_FLAGS = typer.Option(None, "--classifier-flags", help="Classifier flags in the original syntax.")
CLASSIFIER_PATH = typer.Option(None, "--classifier-path", help="Classifier checkpoint; default: the preset's download. "
                               "Inside a run dir of `adm train-classifier`, its flags are read from there.")
CLASSIFIER_RUN_DIR = typer.Option(None, "--classifier-run-dir", help="A classifier's training run directory "
                                  "(`adm train-classifier`): its flags and newest checkpoint guide the sampling.")
RUN_DIR = typer.Option(None, "--run-dir", help="A training run directory (`adm train`): its flags and newest checkpoint "
                       "(runs/x@2000: the checkpoint of step 2000).")
WEIGHTS = typer.Option("ema", "--weights", help="With --run-dir: ema (the newest checkpoint's slowest EMA) or model (the raw weights).")
EMA_RATE = typer.Option(None, "--ema-rate", help="With --run-dir: the EMA of this rate (e.g. 0.999).", show_default=False)
QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar or summary.")
GUIDE_MODEL = typer.Option(None, "--guide-model", help="Autoguidance's guide: a weaker model of the same conditioning — a "
                           "preset, a run dir (runs/x, or runs/x@2000 for that step's checkpoint) or a checkpoint file.")
GUIDE_FLAGS = typer.Option(None, "--guide-flags", help="The guide checkpoint's flags (original syntax), when its run dir "
                           "does not record them.")


def parse_sampler_options(values: list[str] | None) -> dict[str, str]:
    """``["order=1", "eta=0.5"]`` → ``{"order": "1", "eta": "0.5"}`` (the sampler converts the types)."""
    options: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--sampler-opt expects KEY=VALUE, got {item!r}", "e.g. --sampler-opt order=1")
        options[key.strip().replace("-", "_")] = value.strip()
    return options


def parse_interval(text: str, option: str = "--guidance-interval") -> tuple[float, float]:
    try:
        lo, hi = (float(part) for part in text.split(","))
    except ValueError:
        raise UsageError(f"{option} expects LO,HI in [0, 1], got {text!r}", "e.g. 0.2,0.8") from None
    return lo, hi


def parse_guidance(values: list[str] | None) -> dict[str, float] | None:
    """``["mine=2"]`` → ``{"mine": 2.0}``: a plugin's guidance method at a scale."""
    if not values:
        return None
    found: dict[str, float] = {}
    for item in values:
        name, sep, value = item.partition("=")
        try:
            found[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise UsageError(f"--guidance expects NAME=SCALE, got {item!r}", "e.g. --guidance mine=2")
    return found


INTERVAL_HELP = ("Apply the classifier only where LO <= t/T <= HI (e.g. 0,0.6); it is not run elsewhere. Default: 0,1 "
                 "(guided ddim on a cosine schedule: 0,0.995; give 0,1 for the original's exact path).")


def sampling_options(*, skip: tuple[str, ...] = (), scale_help: str | None = None, interval_help: str = INTERVAL_HELP):
    """The options of ``SamplingOptions``, as ``sampling: dict`` of the decorated command."""
    return config_options(SamplingOptions, param="sampling", skip=skip, rename={
        "sampler_options": Rename("--sampler-opt", "A sampler option KEY=VALUE, repeatable, e.g. order=1 "
                                  "(`adm samplers` lists them).", parse_sampler_options, repeat=True, metavar="KEY=VALUE"),
        "eta": Rename("--eta", "Shorthand for --sampler-opt eta=VALUE (ddim, dpm++2m-sde); unset: the sampler's own."),
        "scale": Rename("--scale", scale_help, short="-s"),
        "guidance_interval": Rename("--guidance-interval", interval_help, parse_interval),
        "cfg_scale": Rename("--cfg-scale", None),
        "cfg_interval": Rename("--cfg-interval", None, lambda text: parse_interval(text, "--cfg-interval")),
        "autoguidance": Rename("--autoguidance", None),
        "autoguidance_interval": Rename("--autoguidance-interval", None,
                                        lambda text: parse_interval(text, "--autoguidance-interval")),
        "guidance": Rename("--guidance", None, parse_guidance, repeat=True, metavar="NAME=SCALE"),
        "compile": Rename("--compile", flag=True),
    })


def run_options(*, num_samples_help: str, out_help: str, seed_help: str | None = None):
    """The options of ``RunOptions``, as ``run: dict`` of the decorated command."""
    return config_options(RunOptions, param="run", rename={
        "seed": Rename("--seed", seed_help),
        "num_samples": Rename("--num-samples", num_samples_help, short="-n"),
        "batch_size": Rename("--batch-size", "Images per forward pass (default: the preset's).", short="-b"),
        "out": Rename("--out", out_help, short="-o"),
        "grid": Rename("--grid", "How many samples the PNG grid shows (0: none). Default: 64."),
        "download": Rename("--download", "Fetch missing checkpoints into the cache first.", flag=True),
        "overwrite": Rename("--overwrite", "Replace an output (and shards) that a different command made, "
                            "instead of refusing.", flag=True),
        "device": Rename("--device", "cpu, cuda, cuda:N or mps (default: the best available)."),
    })


def summary(samples: Samples, quiet: bool) -> None:
    if quiet:
        return
    result = samples.result
    how = f"{result.already_done} reused, {result.computed} sampled" if result.already_done else f"{result.computed} sampled"
    console.print(f"wrote {samples.path} ({result.num_samples} images; {how})", soft_wrap=True)
    if samples.grid is not None:
        console.print(f"grid  {samples.grid}", soft_wrap=True)


def render(call, run: dict, default_out: Path, quiet: bool, **kwargs) -> None:
    """Run ``call`` (an API function) on every torchrun rank with a progress bar; summarise on rank 0.

    The option dicts go in as keywords: the API validates them into its typed objects.
    """
    from adm.core.distributed import joined

    run = dict(run)
    out = run.pop("out", None) or default_out
    with joined(run.pop("device", None)) as dist:
        with RichProgress(enabled=dist.is_main and not quiet) as progress:  # an interruption says what was kept
            samples = call(**run, out=out, dist=dist, on_progress=progress, **kwargs)
        if dist.is_main:
            summary(samples, quiet)
            if samples.upsampled is not None:
                summary(samples.upsampled, quiet)


@guarded
@sampling_options(scale_help="Classifier scale (default: the preset's; 0 = no classifier).")
@run_options(num_samples_help="How many images (default: the preset's, else 16; the paper's FIDs use 50000).",
             out_help="Output .npz (default: PRESET_samples.npz, or RUN_samples.npz for --run-dir); a PNG grid and a JSON sidecar go beside it.")
def sample(
    sampling: dict,
    run: dict,
    preset: str | None = PRESET,
    classes: str | None = typer.Option(None, "--classes", help="random (the original's way), balanced, a comma list of ids, a file of ids, or null (no class: a model trained with --label-dropout) (default: the preset's, else random)."),
    model_path: Path | None = MODEL_PATH,
    classifier_path: Path | None = CLASSIFIER_PATH,
    model_flags: str | None = MODEL_FLAGS,
    classifier_flags: str | None = CLASSIFIER_FLAGS,
    classifier_run_dir: Path | None = CLASSIFIER_RUN_DIR,
    run_dir: Path | None = RUN_DIR,
    weights: str = WEIGHTS,
    ema_rate: float | None = EMA_RATE,
    guide_model: str | None = GUIDE_MODEL,
    guide_flags: str | None = GUIDE_FLAGS,
    upsample: str | None = typer.Option(None, "--upsample", help="Then upsample the samples with this preset (cascade), e.g. upsample-64-256."),
    quiet: bool = QUIET,
) -> None:
    """Sample images from a preset or your own model, with classifier guidance."""
    from adm.api.generation import sample as sample_images
    from adm.api.sources import ModelSource

    source = ModelSource(preset, model_flags, model_path, run_dir, classifier_flags, classifier_path, weights, ema_rate,
                         classifier_run_dir, guide_model, guide_flags)
    name = preset or (run_dir.resolve().name if run_dir is not None else "model")  # runs/tc -> tc_samples.npz
    render(sample_images, run, Path(f"{name}_samples.npz"), quiet, source=source, classes=classes,
           then_upsample=upsample, **sampling)


@guarded
@sampling_options(skip=("scale", "guidance_interval", "cfg_scale", "cfg_interval", "autoguidance", "autoguidance_interval", "guidance", "compile"))
@run_options(num_samples_help="How many to upsample (default: all).", out_help="Output .npz (default: BASE-up.npz).")
def upsample(
    sampling: dict,
    run: dict,
    preset: str | None = PRESET,
    base_samples: Path = typer.Option(..., "--base-samples", help="Low-resolution images: an .npz (arr_0, arr_1 labels) or a folder of PNGs."),
    model_path: Path | None = MODEL_PATH,
    model_flags: str | None = MODEL_FLAGS,
    run_dir: Path | None = typer.Option(None, "--run-dir", help="An upsampler's training run directory (`adm train`): "
                                        "its flags and newest checkpoint."),
    weights: str = WEIGHTS,
    ema_rate: float | None = EMA_RATE,
    quiet: bool = QUIET,
) -> None:
    """Upsample low-resolution samples with an upsampler (a preset, flags + checkpoint, or a run dir), conditioned on their labels."""
    from adm.api.generation import upsample as upsample_images
    from adm.api.sources import ModelSource

    source = ModelSource(preset, model_flags, model_path, run_dir, weights=weights, ema_rate=ema_rate)
    render(upsample_images, run, base_samples.with_name(base_samples.stem + "-up.npz"), quiet,
           source=source, base_samples=base_samples, **sampling)
