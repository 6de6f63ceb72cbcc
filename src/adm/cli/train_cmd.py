"""`adm train` and `adm train-classifier`: resolve preset / saved run / options, call the library.

Values are layered: the config's defaults < the training preset's < the run dir's saved config
(when it holds a checkpoint, so re-running the same command continues exactly) < options given
on the command line. Run under ``torchrun`` for several processes; only rank 0 prints.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import typer

from adm.cli.common import console, err_console, guarded
from adm.cli.progress import RichProgress
from adm.errors import UsageError
from adm.flags import (
    ClassifierFlags,
    DiffusionFlags,
    ModelFlags,
    SuperResFlags,
    float_list,
    parse_flags,
    parse_model_flags,
    split_flag_string,
)
from adm.training.config import ClassifierTrainConfig, CommonTrainConfig, TrainConfig


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) or "none"
    if value is None:
        return "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _opt(field: str, *decls: str, cls: type[CommonTrainConfig] = TrainConfig, help: str | None = None) -> Any:
    """A training option, its help ending with the config's default.

    The option's own default is None: a value not given comes from the layers (training preset,
    the run being continued, then the config's default), so typer cannot show it; the help says
    it instead, from the config model, so help and behaviour cannot drift apart.
    """
    info = cls.model_fields[field]
    text = help or (info.description[:1].upper() + info.description[1:] + ".")
    return typer.Option(None, *decls, help=f"{text} Default: {_shown(info.default)}.", show_default=False)


# Options without a config default (typer reads these descriptions only).
DATA = typer.Option(None, "--data", help="Training images: a folder (searched recursively) or an npz (arr_0 uint8 NHWC, arr_1 labels).", show_default=False)
RUN_DIR = typer.Option(..., "--run-dir", help="Where config.json, checkpoints and metrics.jsonl go; re-running continues a run there.")
PRESET = typer.Option(None, "--preset", help="Training preset (network + published hyper-parameters); `adm presets` lists them (tiny* are CPU demos).", show_default=False)
INIT = typer.Option(None, "--init", help="Fine-tune: start from these weights (a state_dict .pt/.safetensors, e.g. a released checkpoint).", show_default=False)
RESUME = typer.Option(False, "--resume", help="Insist on continuing the run in --run-dir (without it a run there is continued anyway).")
STEPS_ALIAS = typer.Option(None, "--steps", hidden=True, help="Deprecated name of --iterations.")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: the best available).", show_default=False)
DRY_RUN = typer.Option(False, "--dry-run", help="Print the resolved run config and exit without training.")


def _iterations(iterations: int | None, steps: int | None, command: str) -> int | None:
    """``--iterations``, or its old name ``--steps`` (kept working, with a warning).

    ``adm sample --steps`` is a respacing string (``ddim25``); in training the same word was a
    count of optimizer steps. The training option is ``--iterations`` (the original's
    classifier_train.py name) so one option name does not mean two things.
    """
    if steps is None:
        return iterations
    if iterations is not None and iterations != steps:
        raise UsageError(f"--iterations {iterations} and --steps {steps} disagree", "--steps is the old name of --iterations: give one")
    if int(os.environ.get("RANK", "0")) == 0:
        err_console.print(
            f"[yellow]warning:[/] `{command} --steps` is deprecated, use --iterations "
            "(in `adm sample`, --steps is the respacing)",
            highlight=False,
            soft_wrap=True,
        )
    return steps


def _explicit(**values: Any) -> dict[str, Any]:
    """Options given on the command line, in TrainConfig names."""
    out = {k: v for k, v in values.items() if v is not None}
    if "data" in out:
        out["data"] = str(out["data"])
    if "init" in out:
        out["init"] = str(out["init"])
    if "val_data" in out:
        out["val_data"] = str(out["val_data"])
    if "ema_rates" in out:
        text = out["ema_rates"].strip()
        out["ema_rates"] = () if text.lower() in ("", "none") else float_list(text, "ema-rate")
    return out


def _saved(run_dir: Path, kind: str) -> dict[str, Any] | None:
    """The run dir's config when it holds a checkpoint of the same kind (to continue it)."""
    from adm.training.checkpoint import read_records
    from adm.training.rundir import read_run_config

    if not (run_dir / "config.json").is_file() or not read_records(run_dir):
        return None
    doc = read_run_config(run_dir)
    return doc if doc["kind"] == kind else None


def _resolve_values(
    preset_train: dict[str, Any], saved: dict[str, Any] | None, explicit: dict[str, Any], *, fp16_flag: bool
) -> dict[str, Any]:
    values = dict(preset_train)
    if saved is not None:
        values.update(saved["train"])
    values.update(explicit)
    if "data" not in values:
        raise UsageError("no training data given", "pass --data FOLDER_OR_NPZ")
    if "precision" not in values and fp16_flag:
        values["precision"] = "fp16"  # the original's --use_fp16 True, now as torch.amp
    return values


def _start(device: str | None):
    from adm.distributed import joined

    if int(os.environ.get("RANK", "0")) != 0:  # only rank 0 reports; errors still reach stderr
        console.quiet = True
    return joined(device)


def _finish(result, run_dir: Path, what: str) -> None:
    metrics = result.metrics
    figures = "  ".join(f"{k} {metrics[k]:.4g}" for k in ("loss", "val_acc@1") if k in metrics)
    if result.interrupted:
        name = signal.Signals(result.signal).name if result.signal else "signal"
        console.print(f"stopped by {name} at step {result.step}; checkpoint saved in {run_dir} (run the same command to continue)")
        raise typer.Exit(128 + (result.signal or 2))
    if result.step == result.start_step:
        console.print(f"{run_dir} is already at step {result.step}; raise --iterations to train further")
        return
    console.print(f"trained {what} to step {result.step} in {run_dir}" + (f"  ({figures})" if figures else ""))
    if result.skipped_images:
        console.print(f"[yellow]skipped {result.skipped_images} unreadable image(s)[/]")


@guarded
def train(
    data: Path | None = DATA,
    run_dir: Path = RUN_DIR,
    preset: str | None = PRESET,
    model_flags: str | None = typer.Option(None, "--model-flags", help='Network flags in the original syntax, e.g. "--image_size 64 --num_channels 128 ..." (on top of --preset). Without --num_classes, a class-conditional model gets the number of classes in --data.', show_default=False),
    init: Path | None = INIT,
    resume: bool = RESUME,
    iterations: int | None = _opt("steps", "--iterations"),
    steps: int | None = STEPS_ALIAS,
    batch_size: int | None = _opt("batch_size", "--batch-size"),
    microbatch: int | None = _opt("microbatch", "--microbatch"),
    lr: float | None = _opt("lr", "--lr"),
    weight_decay: float | None = _opt("weight_decay", "--weight-decay"),
    anneal_lr: bool | None = _opt("anneal_lr", "--anneal-lr/--no-anneal-lr", help="Anneal the learning rate linearly to 0 at the last iteration."),
    ema_rate: str | None = _opt("ema_rates", "--ema-rate", help="EMA rates, comma separated (e.g. 0.9999,0.999); 'none' for no EMA."),
    schedule_sampler: str | None = _opt("schedule_sampler", "--schedule-sampler", help="How training timesteps are drawn: uniform or loss-second-moment."),
    grad_clip: float | None = _opt("grad_clip", "--grad-clip", help="Clip the global gradient norm to this value."),
    precision: str | None = _opt("precision", "--precision", help="fp32, bf16 or fp16 (torch.amp autocast; fp16 with loss scaling; --use_fp16 True in the flags means fp16)."),
    grad_checkpoint: bool | None = _opt("grad_checkpoint", "--grad-checkpoint/--no-grad-checkpoint"),
    compile_: bool | None = _opt("compile", "--compile/--no-compile", help="Wrap the network in torch.compile."),
    seed: int | None = _opt("seed", "--seed"),
    save_every: int | None = _opt("save_every", "--save-every"),
    keep: int | None = _opt("keep", "--keep"),
    log_every: int | None = _opt("log_every", "--log-every"),
    workers: int | None = _opt("workers", "--workers"),
    labels: str | None = _opt("labels", "--labels", help="Class names from: auto, prefix (file name before '_'), folder (sub-folder)."),
    random_crop: bool | None = _opt("random_crop", "--random-crop/--no-random-crop"),
    random_flip: bool | None = _opt("random_flip", "--random-flip/--no-random-flip"),
    plot: bool | None = _opt("plot", "--plot/--no-plot"),
    device: str | None = DEVICE,
    dry_run: bool = DRY_RUN,
) -> None:
    """Train a diffusion model or an upsampler (--large_size in the flags) on a folder or an npz.

    Values not given come from the training preset, else from the run being continued in
    --run-dir, else from the defaults shown.
    """
    from adm.training import get_training_preset, make_config, train_diffusion
    from adm.training.data import open_training_data
    from adm.training.rundir import run_config

    explicit = _explicit(
        data=data, init=init, steps=_iterations(iterations, steps, "adm train"), batch_size=batch_size,
        microbatch=microbatch, lr=lr, weight_decay=weight_decay, anneal_lr=anneal_lr, ema_rates=ema_rate,
        schedule_sampler=schedule_sampler, grad_clip=grad_clip, precision=precision, grad_checkpoint=grad_checkpoint,
        compile=compile_, seed=seed, save_every=save_every, keep=keep, log_every=log_every, workers=workers,
        labels=labels, random_crop=random_crop, random_flip=random_flip, plot=plot,
    )
    saved = _saved(run_dir, "diffusion")
    flags: ModelFlags | SuperResFlags | None = None
    preset_train: dict[str, Any] = {}
    if preset is not None:
        chosen = get_training_preset(preset, "diffusion")
        flags, preset_train = chosen.network_flags(), dict(chosen.train)
    elif saved is not None:
        flags, preset = parse_model_flags(saved["model_flags"]), saved.get("preset")
    if model_flags is not None:
        given = split_flag_string(model_flags)
        flags = parse_model_flags({**(flags.given() if flags else {}), **given})
    if flags is None:
        raise UsageError("no network given", "pass --preset NAME or --model-flags \"--image_size 64 ...\"")
    config = make_config(TrainConfig, _resolve_values(preset_train, saved, explicit, fp16_flag=flags.use_fp16))
    if dry_run:
        flags, _ = open_training_data(flags, config.data, config.labels, init=config.init)
        console.print_json(json.dumps(run_config("diffusion", flags, config.model_dump(mode="json"), preset=preset)))
        return
    with _start(device) as dist, RichProgress(enabled=dist.is_main) as progress:
        result = train_diffusion(config, flags, run_dir, dist=dist, on_progress=progress, preset=preset, resume=resume)
    _finish(result, run_dir, "upsampler" if isinstance(flags, SuperResFlags) else "diffusion model")


def _split_classifier_flags(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """A classifier_train.py-style flag string → (classifier flags, diffusion flags)."""
    classifier, diffusion = {}, {}
    for key, value in split_flag_string(text).items():
        (diffusion if key in DiffusionFlags.model_fields else classifier)[key] = value
    return classifier, diffusion


@guarded
def train_classifier(
    data: Path | None = DATA,
    run_dir: Path = RUN_DIR,
    preset: str | None = PRESET,
    classifier_flags: str | None = typer.Option(None, "--classifier-flags", help='Classifier flags in the original syntax (classifier_* names, plus --diffusion_steps / --noise_schedule of the noising process). Without --classifier_num_classes, the classifier gets one output per class in --data.', show_default=False),
    init: Path | None = INIT,
    resume: bool = RESUME,
    noised: bool | None = _opt("noised", "--noised/--no-noised", cls=ClassifierTrainConfig, help="Train on noised images q(x_t | x_0) at uniform t, or on clean images."),
    val_data: Path | None = typer.Option(None, "--val-data", help="Validation images (same class names as --data).", show_default=False),
    val_fraction: float | None = _opt("val_fraction", "--val-fraction", cls=ClassifierTrainConfig, help="Hold out this fraction of --data for validation."),
    val_samples: int | None = _opt("val_samples", "--val-samples", cls=ClassifierTrainConfig, help="Validation images per evaluation."),
    eval_every: int | None = _opt("eval_every", "--eval-every", cls=ClassifierTrainConfig, help="Steps between validation passes."),
    iterations: int | None = _opt("steps", "--iterations", cls=ClassifierTrainConfig),
    steps: int | None = STEPS_ALIAS,
    batch_size: int | None = _opt("batch_size", "--batch-size", cls=ClassifierTrainConfig),
    microbatch: int | None = _opt("microbatch", "--microbatch", cls=ClassifierTrainConfig),
    lr: float | None = _opt("lr", "--lr", cls=ClassifierTrainConfig),
    weight_decay: float | None = _opt("weight_decay", "--weight-decay", cls=ClassifierTrainConfig),
    anneal_lr: bool | None = _opt("anneal_lr", "--anneal-lr/--no-anneal-lr", cls=ClassifierTrainConfig, help="Anneal the learning rate linearly to 0 at the last iteration."),
    ema_rate: str | None = _opt("ema_rates", "--ema-rate", cls=ClassifierTrainConfig, help="EMA rates, comma separated (e.g. 0.9999,0.999); 'none' for no EMA."),
    grad_clip: float | None = _opt("grad_clip", "--grad-clip", cls=ClassifierTrainConfig, help="Clip the global gradient norm to this value."),
    precision: str | None = _opt("precision", "--precision", cls=ClassifierTrainConfig, help="fp32, bf16 or fp16 (torch.amp autocast; fp16 with loss scaling; --classifier_use_fp16 True means fp16)."),
    grad_checkpoint: bool | None = _opt("grad_checkpoint", "--grad-checkpoint/--no-grad-checkpoint", cls=ClassifierTrainConfig),
    compile_: bool | None = _opt("compile", "--compile/--no-compile", cls=ClassifierTrainConfig, help="Wrap the network in torch.compile."),
    seed: int | None = _opt("seed", "--seed", cls=ClassifierTrainConfig),
    save_every: int | None = _opt("save_every", "--save-every", cls=ClassifierTrainConfig),
    keep: int | None = _opt("keep", "--keep", cls=ClassifierTrainConfig),
    log_every: int | None = _opt("log_every", "--log-every", cls=ClassifierTrainConfig),
    workers: int | None = _opt("workers", "--workers", cls=ClassifierTrainConfig),
    labels: str | None = _opt("labels", "--labels", cls=ClassifierTrainConfig, help="Class names from: auto, prefix (file name before '_'), folder (sub-folder)."),
    random_crop: bool | None = _opt("random_crop", "--random-crop/--no-random-crop", cls=ClassifierTrainConfig),
    random_flip: bool | None = _opt("random_flip", "--random-flip/--no-random-flip", cls=ClassifierTrainConfig),
    plot: bool | None = _opt("plot", "--plot/--no-plot", cls=ClassifierTrainConfig),
    device: str | None = DEVICE,
    dry_run: bool = DRY_RUN,
) -> None:
    """Train the noisy classifier used for guidance, with top-1/top-5 on a validation split.

    Values not given come from the training preset, else from the run being continued in
    --run-dir, else from the defaults shown.
    """
    from adm.training import get_training_preset, make_config
    from adm.training import train_classifier as run
    from adm.training.data import open_training_data
    from adm.training.rundir import run_config

    explicit = _explicit(
        data=data, init=init, noised=noised, val_data=val_data, val_fraction=val_fraction, val_samples=val_samples,
        eval_every=eval_every, steps=_iterations(iterations, steps, "adm train-classifier"), batch_size=batch_size,
        microbatch=microbatch, lr=lr, weight_decay=weight_decay, anneal_lr=anneal_lr, ema_rates=ema_rate,
        grad_clip=grad_clip, precision=precision, grad_checkpoint=grad_checkpoint, compile=compile_, seed=seed,
        save_every=save_every, keep=keep, log_every=log_every, workers=workers, labels=labels,
        random_crop=random_crop, random_flip=random_flip, plot=plot,
    )
    saved = _saved(run_dir, "classifier")
    flags: ClassifierFlags | None = None
    noise = DiffusionFlags()
    preset_train: dict[str, Any] = {}
    if preset is not None:
        chosen = get_training_preset(preset, "classifier")
        flags, noise, preset_train = chosen.network_flags(), chosen.noise_flags(), dict(chosen.train)
    elif saved is not None:
        flags = parse_flags(ClassifierFlags, saved["classifier_flags"])
        noise = parse_flags(DiffusionFlags, saved.get("diffusion_flags") or {})
        preset = saved.get("preset")
    if classifier_flags is not None:
        given, given_noise = _split_classifier_flags(classifier_flags)
        flags = parse_flags(ClassifierFlags, {**(flags.given() if flags else {}), **given})
        noise = parse_flags(DiffusionFlags, {**noise.given(), **given_noise})
    if flags is None:
        raise UsageError("no classifier given", "pass --preset NAME or --classifier-flags \"--image_size 64 ...\"")
    values = _resolve_values(preset_train, saved, explicit, fp16_flag=flags.classifier_use_fp16)
    config = make_config(ClassifierTrainConfig, values)
    if dry_run:
        flags, _ = open_training_data(flags, config.data, config.labels, init=config.init)
        doc = run_config("classifier", flags, config.model_dump(mode="json"), diffusion_flags=noise, preset=preset)
        console.print_json(json.dumps(doc))
        return
    with _start(device) as dist, RichProgress(enabled=dist.is_main) as progress:
        result = run(config, flags, run_dir, diffusion=noise, dist=dist, on_progress=progress, preset=preset, resume=resume)
    _finish(result, run_dir, "classifier")
