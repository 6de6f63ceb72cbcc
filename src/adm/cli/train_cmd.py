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

from adm.cli.common import console, guarded
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

# Options shared by both commands (typer reads these descriptions only).
DATA = typer.Option(None, "--data", help="Training images: a folder (searched recursively) or an npz (arr_0 uint8 NHWC, arr_1 labels).", show_default=False)
RUN_DIR = typer.Option(..., "--run-dir", help="Where config.json, checkpoints and metrics.jsonl go; re-running continues a run there.")
PRESET = typer.Option(None, "--preset", help="Training preset (network + published hyper-parameters); `adm presets` lists released models, tiny* are CPU demos.", show_default=False)
INIT = typer.Option(None, "--init", help="Fine-tune: start from these weights (a state_dict .pt/.safetensors, e.g. a released checkpoint).", show_default=False)
RESUME = typer.Option(False, "--resume", help="Insist on continuing the run in --run-dir (without it a run there is continued anyway).")
STEPS = typer.Option(None, "--steps", help="Optimizer steps to train for (the run stops there).", show_default=False)
BATCH = typer.Option(None, "--batch-size", help="GLOBAL batch size (all processes and micro-batches together).", show_default=False)
MICRO = typer.Option(None, "--microbatch", help="Per-process micro-batch for gradient accumulation (0: none).", show_default=False)
LR = typer.Option(None, "--lr", help="AdamW learning rate.", show_default=False)
WD = typer.Option(None, "--weight-decay", help="AdamW weight decay.", show_default=False)
ANNEAL = typer.Option(None, "--anneal-lr/--no-anneal-lr", help="Anneal the learning rate linearly to 0 at --steps.", show_default=False)
EMA = typer.Option(None, "--ema-rate", help="EMA rates, comma separated (e.g. 0.9999,0.999); 'none' for no EMA.", show_default=False)
CLIP = typer.Option(None, "--grad-clip", help="Clip the gradient norm to this value.", show_default=False)
PRECISION = typer.Option(None, "--precision", help="fp32, bf16 or fp16 (torch.amp autocast; fp16 with loss scaling).", show_default=False)
CHECKPOINTING = typer.Option(None, "--grad-checkpoint/--no-grad-checkpoint", help="Recompute activations in backward to save memory.", show_default=False)
COMPILE = typer.Option(None, "--compile/--no-compile", help="torch.compile the network.", show_default=False)
SEED = typer.Option(None, "--seed", help="Seed of data order, augmentation, noise, timesteps and dropout.", show_default=False)
SAVE = typer.Option(None, "--save-every", help="Checkpoint every this many steps (and at the end).", show_default=False)
KEEP = typer.Option(None, "--keep", help="Checkpoints to keep (newest); 0 keeps all.", show_default=False)
LOG = typer.Option(None, "--log-every", help="Steps between metrics records and progress updates.", show_default=False)
WORKERS = typer.Option(None, "--workers", help="Data-loading worker processes per process.", show_default=False)
LABELS = typer.Option(None, "--labels", help="Class names from: auto, prefix (file name before '_'), folder (sub-folder).", show_default=False)
CROP = typer.Option(None, "--random-crop/--no-random-crop", help="Random-resized crop instead of the center crop.", show_default=False)
FLIP = typer.Option(None, "--random-flip/--no-random-flip", help="Random horizontal flips.", show_default=False)
PLOT = typer.Option(None, "--plot/--no-plot", help="Draw loss.png in the run dir at every checkpoint.", show_default=False)
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: the best available).", show_default=False)
DRY_RUN = typer.Option(False, "--dry-run", help="Print the resolved run config and exit without training.")


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
        console.print(f"{run_dir} is already at step {result.step}; raise --steps to train further")
        return
    console.print(f"trained {what} to step {result.step} in {run_dir}" + (f"  ({figures})" if figures else ""))
    if result.skipped_images:
        console.print(f"[yellow]skipped {result.skipped_images} unreadable image(s)[/]")


@guarded
def train(
    data: Path | None = DATA,
    run_dir: Path = RUN_DIR,
    preset: str | None = PRESET,
    model_flags: str | None = typer.Option(None, "--model-flags", help='Network flags in the original syntax, e.g. "--image_size 64 --num_channels 128 ..." (on top of --preset).', show_default=False),
    init: Path | None = INIT,
    resume: bool = RESUME,
    steps: int | None = STEPS,
    batch_size: int | None = BATCH,
    microbatch: int | None = MICRO,
    lr: float | None = LR,
    weight_decay: float | None = WD,
    anneal_lr: bool | None = ANNEAL,
    ema_rate: str | None = EMA,
    schedule_sampler: str | None = typer.Option(None, "--schedule-sampler", help="uniform or loss-second-moment.", show_default=False),
    grad_clip: float | None = CLIP,
    precision: str | None = PRECISION,
    grad_checkpoint: bool | None = CHECKPOINTING,
    compile_: bool | None = COMPILE,
    seed: int | None = SEED,
    save_every: int | None = SAVE,
    keep: int | None = KEEP,
    log_every: int | None = LOG,
    workers: int | None = WORKERS,
    labels: str | None = LABELS,
    random_crop: bool | None = CROP,
    random_flip: bool | None = FLIP,
    plot: bool | None = PLOT,
    device: str | None = DEVICE,
    dry_run: bool = DRY_RUN,
) -> None:
    """Train a diffusion model or an upsampler (--large_size in the flags) on a folder or an npz."""
    from adm.training import TrainConfig, get_training_preset, make_config, train_diffusion
    from adm.training.rundir import run_config

    explicit = _explicit(
        data=data, init=init, steps=steps, batch_size=batch_size, microbatch=microbatch, lr=lr,
        weight_decay=weight_decay, anneal_lr=anneal_lr, ema_rates=ema_rate, schedule_sampler=schedule_sampler,
        grad_clip=grad_clip, precision=precision, grad_checkpoint=grad_checkpoint, compile=compile_, seed=seed,
        save_every=save_every, keep=keep, log_every=log_every, workers=workers, labels=labels,
        random_crop=random_crop, random_flip=random_flip, plot=plot,
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
        flags = parse_model_flags({**(flags.flag_dict() if flags else {}), **given})
    if flags is None:
        raise UsageError("no network given", "pass --preset NAME or --model-flags \"--image_size 64 ...\"")
    config = make_config(TrainConfig, _resolve_values(preset_train, saved, explicit, fp16_flag=flags.use_fp16))
    if dry_run:
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
    classifier_flags: str | None = typer.Option(None, "--classifier-flags", help='Classifier flags in the original syntax (classifier_* names, plus --diffusion_steps / --noise_schedule of the noising process).', show_default=False),
    init: Path | None = INIT,
    resume: bool = RESUME,
    noised: bool | None = typer.Option(None, "--noised/--no-noised", help="Train on noised images q(x_t | x_0) at uniform t (default), or on clean images.", show_default=False),
    val_data: Path | None = typer.Option(None, "--val-data", help="Validation images (same class names as --data).", show_default=False),
    val_fraction: float | None = typer.Option(None, "--val-fraction", help="Hold out this fraction of --data for validation.", show_default=False),
    val_samples: int | None = typer.Option(None, "--val-samples", help="Validation images per evaluation.", show_default=False),
    eval_every: int | None = typer.Option(None, "--eval-every", help="Steps between validation passes.", show_default=False),
    steps: int | None = STEPS,
    batch_size: int | None = BATCH,
    microbatch: int | None = MICRO,
    lr: float | None = LR,
    weight_decay: float | None = WD,
    anneal_lr: bool | None = ANNEAL,
    ema_rate: str | None = EMA,
    grad_clip: float | None = CLIP,
    precision: str | None = PRECISION,
    grad_checkpoint: bool | None = CHECKPOINTING,
    compile_: bool | None = COMPILE,
    seed: int | None = SEED,
    save_every: int | None = SAVE,
    keep: int | None = KEEP,
    log_every: int | None = LOG,
    workers: int | None = WORKERS,
    labels: str | None = LABELS,
    random_crop: bool | None = CROP,
    random_flip: bool | None = FLIP,
    plot: bool | None = PLOT,
    device: str | None = DEVICE,
    dry_run: bool = DRY_RUN,
) -> None:
    """Train the noisy classifier used for guidance, with top-1/top-5 on a validation split."""
    from adm.training import ClassifierTrainConfig, get_training_preset, make_config
    from adm.training import train_classifier as run
    from adm.training.rundir import run_config

    explicit = _explicit(
        data=data, init=init, noised=noised, val_data=val_data, val_fraction=val_fraction, val_samples=val_samples,
        eval_every=eval_every, steps=steps, batch_size=batch_size, microbatch=microbatch, lr=lr,
        weight_decay=weight_decay, anneal_lr=anneal_lr, ema_rates=ema_rate, grad_clip=grad_clip,
        precision=precision, grad_checkpoint=grad_checkpoint, compile=compile_, seed=seed, save_every=save_every,
        keep=keep, log_every=log_every, workers=workers, labels=labels, random_crop=random_crop,
        random_flip=random_flip, plot=plot,
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
        flags = parse_flags(ClassifierFlags, {**(flags.flag_dict() if flags else {}), **given})
        noise = parse_flags(DiffusionFlags, {**noise.flag_dict(), **given_noise})
    if flags is None:
        raise UsageError("no classifier given", "pass --preset NAME or --classifier-flags \"--image_size 64 ...\"")
    values = _resolve_values(preset_train, saved, explicit, fp16_flag=flags.classifier_use_fp16)
    config = make_config(ClassifierTrainConfig, values)
    if dry_run:
        doc = run_config("classifier", flags, config.model_dump(mode="json"), diffusion_flags=noise, preset=preset)
        console.print_json(json.dumps(doc))
        return
    with _start(device) as dist, RichProgress(enabled=dist.is_main) as progress:
        result = run(config, flags, run_dir, diffusion=noise, dist=dist, on_progress=progress, preset=preset, resume=resume)
    _finish(result, run_dir, "classifier")
