"""`adm train` and `adm train-classifier`: options in, ``adm.training.runs`` does the rest.

The options are generated from the config models (``adm.cli.config_options``); which values
win (preset, the run being continued, the command line) is ``adm.training.runs.resolve_run``, the
same rule the Python API (``adm.train``) follows. Run under ``torchrun`` for several processes;
only rank 0 prints.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import typer

from adm.api.catalog import SuperResFlags
from adm.api.training import ClassifierTrainConfig, TrainConfig, float_list
from adm.cli.common import console, err_console, guarded
from adm.cli.config_options import Rename, config_options
from adm.cli.progress import RichProgress
from adm.core.errors import UsageError

RUN_DIR = typer.Option(..., "--run-dir", help="Where config.json, checkpoints and metrics.jsonl go; re-running continues a run there.")
PRESET = typer.Option(None, "--preset", help="Training preset (network + published hyper-parameters); `adm presets` lists them (tiny* are CPU demos).", show_default=False)
RESUME = typer.Option(False, "--resume", help="Insist on continuing the run in --run-dir (without it a run there is continued anyway).")
STEPS_ALIAS = typer.Option(None, "--steps", hidden=True, help="Deprecated name of --iterations.")
DEVICE = typer.Option(None, "--device", help="cpu, cuda, cuda:N or mps (default: the best available).", show_default=False)
DRY_RUN = typer.Option(False, "--dry-run", help="Print the resolved run config and exit without training.")


def _ema_rates(text: str) -> tuple[float, ...]:
    text = text.strip()
    return () if text.lower() in ("", "none") else float_list(text, "ema-rate")


RENAMES = {
    "ema_rates": Rename("--ema-rate", "EMA rates, comma separated (e.g. 0.9999,0.999); 'none' for no EMA.", _ema_rates),
    "data": Rename("--data", "Training images: a folder (searched recursively) or an npz (arr_0 uint8 NHWC, arr_1 labels)."),
    "init": Rename("--init", "Fine-tune: start from these weights (a state_dict .pt/.safetensors, e.g. a released checkpoint)."),
    "precision": Rename("--precision", "fp32, bf16 or fp16 (torch.amp autocast; fp16 with loss scaling; --use_fp16 True in the flags means fp16)."),
    "anneal_lr": Rename("--anneal-lr", "Anneal the learning rate linearly to 0 at the last iteration."),
    "labels": Rename("--labels", "Class names from: auto, prefix (file name before '_'), folder (sub-folder)."),
}


WATCHING = "Watching a run"  # the help panel of what shows a run's progress beyond metrics.jsonl
LOG = Rename("--log", "jsonl: metrics.jsonl only (always written); tensorboard: also TensorBoard event files in RUN/tb "
             "(losses, lr, grad norm, metrics, sample grids; needs pip install \"adm-diffusion\\[tensorboard]\").",
             panel=WATCHING)
WATCH_RENAMES = {
    "log": LOG,
    **{name: Rename("--" + name.replace("_", "-"), panel=WATCHING)
       for name in ("sample_every", "sample_count", "sample_sampler", "sample_steps",
                    "eval_every", "eval_metric", "eval_samples", "eval_ref")},
}


def _iterations(options: dict, steps: int | None, command: str) -> None:
    """``--steps``, the old name of ``--iterations``: still works, with a warning.

    ``adm sample --steps`` is what the sampler walks; in training the same word was a count of
    optimizer steps, so the training option is ``--iterations`` (classifier_train.py's name).
    """
    if steps is None:
        return
    if options.get("iterations", steps) != steps:
        raise UsageError(f"--iterations {options['iterations']} and --steps {steps} disagree", "--steps is the old name of --iterations: give one")
    if int(os.environ.get("RANK", "0")) == 0:
        err_console.print(f"[yellow]warning:[/] `{command} --steps` is deprecated, use --iterations "
                          "(in `adm sample`, --steps is what the sampler walks)", highlight=False, soft_wrap=True)
    options["iterations"] = steps


def _run(kind: str, run_dir: Path, preset: str | None, flags: str | None, options: dict, *, resume: bool,
         device: str | None, dry_run: bool, what: str) -> None:
    from adm.api.training import RunRequest, resolve_run, start_run
    from adm.core.distributed import joined

    run = resolve_run(RunRequest(kind, run_dir, preset, flags, options))
    if dry_run:
        console.print_json(json.dumps(run.document()))
        return
    if int(os.environ.get("RANK", "0")) != 0:  # only rank 0 reports; errors still reach stderr
        console.quiet = True
    with joined(device) as dist, RichProgress(enabled=dist.is_main) as progress:
        result = start_run(run, dist=dist, on_progress=progress, resume=resume)
    _finish(result, run_dir, "upsampler" if isinstance(run.flags, SuperResFlags) and kind == "diffusion" else what)


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
@config_options(TrainConfig, rename={**RENAMES, **WATCH_RENAMES})
def train(
    options: dict,
    run_dir: Path = RUN_DIR,
    preset: str | None = PRESET,
    model_flags: str | None = typer.Option(None, "--model-flags", help='Network flags in the original syntax, e.g. "--image_size 64 --num_channels 128 ..." (on top of --preset). Without --num_classes, a class-conditional model gets the number of classes in --data.', show_default=False),
    resume: bool = RESUME,
    steps: int | None = STEPS_ALIAS,
    device: str | None = DEVICE,
    dry_run: bool = DRY_RUN,
) -> None:
    """Train a diffusion model or an upsampler (--large_size in the flags) on a folder or an npz.

    Values not given come from the training preset, else from the run being continued in
    --run-dir, else from the defaults shown.
    """
    _iterations(options, steps, "adm train")
    _run("diffusion", run_dir, preset, model_flags, options, resume=resume, device=device, dry_run=dry_run,
         what="diffusion model")


@guarded
@config_options(ClassifierTrainConfig, rename={
    **RENAMES,
    "log": LOG,
    "precision": Rename("--precision", "fp32, bf16 or fp16 (torch.amp autocast; fp16 with loss scaling; --classifier_use_fp16 True means fp16)."),
})
def train_classifier(
    options: dict,
    run_dir: Path = RUN_DIR,
    preset: str | None = PRESET,
    classifier_flags: str | None = typer.Option(None, "--classifier-flags", help='Classifier flags in the original syntax (classifier_* names, plus --diffusion_steps / --noise_schedule of the noising process). Without --classifier_num_classes, the classifier gets one output per class in --data.', show_default=False),
    resume: bool = RESUME,
    steps: int | None = STEPS_ALIAS,
    device: str | None = DEVICE,
    dry_run: bool = DRY_RUN,
) -> None:
    """Train the noisy classifier used for guidance, with top-1/top-5 on a validation split.

    Values not given come from the training preset, else from the run being continued in
    --run-dir, else from the defaults shown.
    """
    _iterations(options, steps, "adm train-classifier")
    _run("classifier", run_dir, preset, classifier_flags, options, resume=resume, device=device, dry_run=dry_run,
         what="classifier")
