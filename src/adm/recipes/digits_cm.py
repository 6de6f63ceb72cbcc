"""The recipe that makes the `digits-cm` preset: the shipped guided `digits` sampler distilled into
a one- or two-step consistency model (``adm distill --teacher digits``), its float16 weights, and a
short table against the teacher's own fast sampler. ``adm recipe digits-cm OUT`` runs it;
``--quick`` runs every stage for a few steps (the test suite does).

``DISTILL`` is the recipe (the one place it is written): ``benchmarks/distill.py`` measures it and
its variants (docs/distill.md), and the preset ships the EMA weights of its last step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from adm.core.fileio import write_json_atomic
from adm.core.progress import ProgressFn, report
from adm.data.digits import load_digits, write_digits
from adm.evaluation.digits_judge import Judge
from adm.hub.checkpoints import load_state_dict
from adm.presets.registry import Registry, default_registry
from adm.recipes.digits import RecipeReport, save_half

ASSET = "digits_cm_model.safetensors"  # as shipped
TEACHER = "digits"  # classifier-guided at the preset's scale
# Issue 24's plain recipe for an ε-prediction teacher (docs/distill.md): σ_max 10 (the teacher's
# x̂₀ is poor above it), guided Heun teacher steps, pseudo-Huber, target EMA 0.95, batch 32 in 4
# groups of its own level each (one level per step drifted; docs/distill.md).
DISTILL: dict[str, Any] = {
    "sigma_max": 10.0, "scales": 18, "levels_per_step": 4, "teacher_solver": "heun", "batch_size": 32, "lr": 1e-4, "target_ema": 0.95,
    "loss": "pseudo-huber", "ema_rates": (0.999,), "iterations": 4000, "save_every": 500, "keep": 0,
    "log_every": 50, "workers": 0, "seed": 0,
}
SHIPPED_EMA = 0.999  # the sampling EMA the recipe keeps
SHIPPED = "ema"  # which weights of the last step ship: "ema" (of SHIPPED_EMA) or "model" (the raw weights)
QUICK = {"iterations": 4, "save_every": 2, "log_every": 1}
# (preset, sampler, steps) rows of the recipe's table (None: the preset's default): the student in one
# step and in its default two, the teacher's own default sampler
ROWS = (("digits-cm", "cm", "1"), ("digits-cm", None, None), (TEACHER, None, None))


def run_distill_recipe(out: str | Path, *, quick: bool = False, registry: Registry | None = None,
                       on_progress: ProgressFn | None = None) -> RecipeReport:
    """Distil `digits` into `digits-cm`, export the student's EMA weights in float16, measure."""
    from adm.api.distill import distill
    from adm.hub.download import ensure_artifact
    from adm.training.rundir import read_run

    registry = registry or default_registry()
    out = Path(out)
    rep = RecipeReport(out)
    data = write_digits(out / "data" / "digits-train.npz", split="train", overwrite=True)
    run_dir = out / "runs" / "digits-cm"
    report(on_progress, "recipe", 1, 2, message=f"distilling {TEACHER} (adm distill --teacher {TEACHER})")
    start = time.perf_counter()
    result = distill(TEACHER, run_dir=run_dir, data=str(data), device="cpu", registry=registry,
                     on_progress=on_progress, **{**DISTILL, **(QUICK if quick else {})})
    rep.seconds["distill"] = time.perf_counter() - start
    rep.numbers["steps_distilled"] = result.step
    if "loss" in result.metrics:
        rep.numbers["final_loss"] = float(result.metrics["loss"])

    report(on_progress, "recipe", 2, 2, message="exporting float16 weights, measuring")
    asset = out / "assets" / ASSET
    save_half(load_state_dict(read_run(run_dir).weights(SHIPPED, rate=SHIPPED_EMA if SHIPPED == "ema" else None)), asset)
    referee = Judge.load(ensure_artifact("digits-judge", registry=registry))
    heldout = Judge.fit_statistics(referee.net, load_digits().split("heldout"))  # what no model trained on
    rep.scales = student_table(asset, heldout, registry, num_samples=20 if quick else 200)
    write_json_atomic(out / "recipe.json", rep.as_dict())
    return rep


def student_table(asset: Path, referee: Judge, registry: Registry, *, num_samples: int, seed: int = 0) -> list[dict]:
    """Judge accuracy, digits-FD and seconds per image of the exported student and of its teacher's
    preset sampler (same seeds, class-balanced)."""
    from adm.api.generation import sample
    from adm.api.sources import ModelSource

    rows = []
    for preset, sampler, steps in ROWS:
        source = ModelSource(preset=preset, model_path=asset if preset == "digits-cm" else None)
        options = {"sampler": sampler, "steps": steps} if sampler else {}
        start = time.perf_counter()
        samples = sample(source=source, num_samples=num_samples, classes="balanced", seed=seed, device="cpu",
                         registry=registry, **options)
        seconds = (time.perf_counter() - start) / num_samples
        scores = referee.score(samples.images, samples.labels)
        defaults = registry.preset(preset).sampling
        rows.append({"preset": preset, "sampler": sampler or defaults.sampler, "steps": steps or defaults.steps,
                     "accuracy": scores.accuracy, "digits_fd": scores.digits_fd, "seconds_per_image": seconds,
                     "num_samples": num_samples})
    return rows


__all__ = ["ASSET", "DISTILL", "run_distill_recipe", "student_table"]
