"""`adm distill`: a one- or two-step student of any model adm can sample (``adm.api.distill``).

The training options are generated from ``DistillConfig`` (``adm train``'s plus the
distillation's own), the teacher's guidance options from the API's ``SamplingOptions`` (as
``adm sample`` has them), so the help texts are the library's. Run under ``torchrun`` for several
processes; only rank 0 prints.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import typer

from adm.api.distill import DistillConfig
from adm.cli.common import console, guarded
from adm.cli.config_options import Rename, config_options
from adm.cli.progress import RichProgress
from adm.cli.sample_cmd import GUIDE_FLAGS, sampling_options
from adm.cli.train_cmd import DEVICE, DRY_RUN, RENAMES, RESUME, WATCH_RENAMES

# the sampling options that are not the teacher's: its step is --teacher-solver, its precision the training's
NOT_TEACHER = ("sampler", "steps", "spacing", "sampler_options", "eta", "compile", "precision")

RUN_DIR = typer.Option(..., "--run-dir", help="Where the student's config.json, checkpoints and metrics.jsonl go; "
                       "re-running continues the distillation there (with the teacher it records).")
TEACHER = typer.Option(None, "--teacher", help="The teacher: a preset (`adm presets`), a run dir of `adm train` "
                       "(runs/x, or runs/x@2000 for that step's checkpoint) or a checkpoint file. Default: the one the "
                       "run in --run-dir was distilled from.", show_default=False)
TEACHER_PATH = typer.Option(None, "--teacher-path", help="The teacher's checkpoint (with --teacher-flags, or inside an "
                            "adm run dir).", show_default=False)
TEACHER_FLAGS = typer.Option(None, "--teacher-flags", help="The teacher checkpoint's flags in the original syntax.",
                             show_default=False)
TEACHER_WEIGHTS = typer.Option("ema", "--teacher-weights", help="With a run dir teacher: ema (its newest checkpoint's "
                               "slowest EMA) or model (the raw weights).")
TEACHER_EMA_RATE = typer.Option(None, "--teacher-ema-rate", help="With a run dir teacher: the EMA of this rate.",
                                show_default=False)
CLASSIFIER_FLAGS = typer.Option(None, "--classifier-flags", help="The teacher's guiding classifier: its flags "
                                "(original syntax).", show_default=False)
CLASSIFIER_PATH = typer.Option(None, "--classifier-path", help="The guiding classifier's checkpoint (default: the "
                               "teacher preset's).", show_default=False)
CLASSIFIER_RUN_DIR = typer.Option(None, "--classifier-run-dir", help="The guiding classifier as a run dir of "
                                  "`adm train-classifier`.", show_default=False)
GUIDE_MODEL = typer.Option(None, "--guide-model", help="Autoguidance's guide of the teacher: a preset, a run dir or a "
                           "checkpoint.", show_default=False)
DOWNLOAD = typer.Option(False, "--download", help="Fetch the teacher's missing checkpoints into the cache first.")


def _finish(result, run_dir: Path) -> None:
    if result.interrupted:
        name = signal.Signals(result.signal).name if result.signal else "signal"
        console.print(f"stopped by {name} at step {result.step}; checkpoint saved in {run_dir} "
                      "(run the same command to continue)")
        raise typer.Exit(128 + (result.signal or 2))
    if result.step == result.start_step:
        console.print(f"{run_dir} is already at step {result.step}; raise --iterations to distil further")
        return
    loss = result.metrics.get("loss")
    console.print(f"distilled a consistency model to step {result.step} in {run_dir}"
                  + (f"  (loss {loss:.4g})" if loss is not None else ""), soft_wrap=True)
    console.print(f"sample it in one step: adm sample --run-dir {run_dir} --steps 1 (two: --steps 0,K re-noises to "
                  "level K of its grid; docs/distill.md)", soft_wrap=True)


@guarded
@sampling_options(skip=NOT_TEACHER, interval_help="Apply the teacher's classifier only where LO <= t/T <= HI "
                  "(e.g. 0,0.6). Default: 0,1.", scale_help="The teacher's classifier scale (default: the teacher preset's; "
                  "0 = no classifier).")
@config_options(DistillConfig, rename={
    **RENAMES,
    **WATCH_RENAMES,
    "init": Rename("--init", "The student's initial weights (a state_dict file of the teacher's network); default: "
                   "the teacher's own."),
})
def distill(
    options: dict,
    sampling: dict,
    run_dir: Path = RUN_DIR,
    teacher: str | None = TEACHER,
    teacher_path: Path | None = TEACHER_PATH,
    teacher_flags: str | None = TEACHER_FLAGS,
    teacher_weights: str = TEACHER_WEIGHTS,
    teacher_ema_rate: float | None = TEACHER_EMA_RATE,
    classifier_flags: str | None = CLASSIFIER_FLAGS,
    classifier_path: Path | None = CLASSIFIER_PATH,
    classifier_run_dir: Path | None = CLASSIFIER_RUN_DIR,
    guide_model: str | None = GUIDE_MODEL,
    guide_flags: str | None = GUIDE_FLAGS,
    resume: bool = RESUME,
    device: str | None = DEVICE,
    download: bool = DOWNLOAD,
    dry_run: bool = DRY_RUN,
) -> None:
    """Distil a model (guidance included) into a consistency model that samples in 1 or 2 steps.

    Consistency distillation (Song et al. 2023) with the pseudo-Huber loss (Song & Dhariwal 2023):
    the student is the teacher's own network, initialised from it; `adm sample --run-dir R
    --sampler cm` samples it. Values not given come from the run being continued in --run-dir,
    else from the defaults shown.
    """
    from adm.api.distill import resolve_distill
    from adm.core.distributed import joined

    if int(os.environ.get("RANK", "0")) != 0:  # only rank 0 reports; errors still reach stderr
        console.quiet = True
    with joined(device) as dist, RichProgress(enabled=dist.is_main and not dry_run) as progress:
        run = resolve_distill(teacher, run_dir=run_dir, teacher_path=teacher_path, teacher_flags=teacher_flags,
                              teacher_weights=teacher_weights, teacher_ema_rate=teacher_ema_rate,
                              classifier_flags=classifier_flags, classifier_path=classifier_path,
                              classifier_run_dir=classifier_run_dir, guide_model=guide_model, guide_flags=guide_flags,
                              download=download, dist=dist, on_progress=progress, **options, **sampling)
        if dry_run:
            if dist.is_main:
                console.print_json(json.dumps(run.document))
            return
        result = run.start(dist=dist, on_progress=progress, resume=resume)
    _finish(result, run_dir)
