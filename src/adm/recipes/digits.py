"""The recipe that makes the `digits` preset: data → diffusion model → noisy classifier → judge →
shipped weights → the guidance-scale table. ``adm recipe digits OUT`` runs it (about 45 minutes on
2 CPU cores); ``--quick`` runs every stage for a few steps (the test suite does).

``adm recipe digits-cfg OUT`` makes the `digits-cfg` and `digits-guide` presets the same way: the
shipped digits model fine-tuned with label dropout (``adm train --preset digits-cfg --init ...``),
a small model trained from scratch whose early checkpoint guides it (``adm train --preset
digits-guide``), their float16 weights and a short table of classifier-free guidance and
autoguidance (docs/guidance.md has the full measurement, ``benchmarks/guidance.py``).

Each stage is adm's ordinary machinery (``adm data digits``, ``adm train --preset digits``,
``adm train-classifier --preset digits``), so the recipe is also a worked example of training your
own guided model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from adm.core.fileio import atomic_path, write_json_atomic
from adm.core.progress import ProgressFn, report
from adm.data.digits import load_digits, write_digits
from adm.evaluation.digits_judge import Judge, judge, train_judge
from adm.hub.checkpoints import load_state_dict
from adm.presets.registry import Registry, default_registry

ASSETS = ("digits_model.safetensors", "digits_classifier.safetensors", "digits_judge.safetensors")  # as shipped
SCALES = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
GUIDANCE_ASSETS = ("digits_cfg_model.safetensors", "digits_guide_model.safetensors")  # as shipped
GUIDANCE_ROWS = ((0.0, 0.0), (1.0, 0.0), (0.0, 1.0))  # (cfg scale, autoguidance) of the recipe's table


@dataclass
class RecipeReport:
    out: Path
    seconds: dict[str, float] = field(default_factory=dict)
    numbers: dict[str, float] = field(default_factory=dict)
    scales: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"seconds": self.seconds, "numbers": self.numbers, "guidance": self.scales}


def save_half(state: dict[str, torch.Tensor], path: Path) -> Path:
    """Shipped weights are float16 (half the wheel size); adm loads them into float32 networks."""
    with atomic_path(path) as tmp:
        save_file({k: v.detach().to(torch.float16).contiguous() for k, v in state.items()}, str(tmp))
    return path


def guidance_table(model_path: Path, classifier_path: Path, referee: Judge, *, scales, num_samples: int,
                   steps: str, seed: int = 0) -> list[dict]:
    """Judge accuracy and digits-FD of class-balanced samples at each guidance scale (same seeds)."""
    from adm.api.generation import sample
    from adm.api.sources import ModelSource
    from adm.presets.training import DIGITS_CLASSIFIER, DIGITS_MODEL

    source = ModelSource(model_flags=DIGITS_MODEL, model_path=model_path, classifier_flags=DIGITS_CLASSIFIER,
                         classifier_path=classifier_path)
    rows = []
    for scale in scales:
        samples = sample(source=source, scale=scale, steps=steps, num_samples=num_samples, classes="balanced",
                         seed=seed, device="cpu")
        scores = referee.score(samples.images, samples.labels)
        rows.append({"scale": scale, "accuracy": scores.accuracy, "digits_fd": scores.digits_fd, "num_samples": num_samples})
    return rows


def run_recipe(out: str | Path, *, quick: bool = False, registry: Registry | None = None,
               on_progress: ProgressFn | None = None) -> RecipeReport:
    from adm.training import (
        ClassifierTrainConfig,
        TrainConfig,
        fit_classifier,
        fit_diffusion,
        latest_weights,
    )
    from adm.training.config import make_config

    registry = registry or default_registry()
    out = Path(out)
    rep = RecipeReport(out)
    clock = time.perf_counter

    start = clock()
    data = write_digits(out / "data" / "digits-train.npz", split="train", overwrite=True)  # the recipe's own file
    real = load_digits()
    rep.seconds["data"] = clock() - start

    shorten = {"iterations": 20, "save_every": 20, "log_every": 5} if quick else {}
    diffusion = registry.training_preset("digits", "diffusion")
    start = clock()
    report(on_progress, "recipe", 1, 5, message="training the diffusion model (adm train --preset digits)")
    config = make_config(TrainConfig, {**diffusion.train, **shorten, "data": str(data)})
    result = fit_diffusion(config, registry.network_flags(diffusion), out / "runs" / "digits", preset="digits",
                             on_progress=on_progress)
    rep.seconds["diffusion"] = clock() - start
    rep.numbers["diffusion_steps_trained"] = result.step
    if "loss" in result.metrics:  # a run resumed at its end trains no step and logs no loss
        rep.numbers["diffusion_final_loss"] = float(result.metrics["loss"])

    classifier = registry.training_preset("digits", "classifier")
    start = clock()
    report(on_progress, "recipe", 2, 5, message="training the noisy classifier (adm train-classifier --preset digits)")
    cconfig = make_config(ClassifierTrainConfig, {
        **classifier.train, **shorten, "data": str(data), **({"eval_every": 10} if quick else {}),
    })
    cresult = fit_classifier(cconfig, registry.network_flags(classifier), out / "runs" / "digits-classifier",
                               diffusion=classifier.noise_flags(), preset="digits", on_progress=on_progress)
    rep.seconds["classifier"] = clock() - start
    for key in ("val_acc@1", "val_loss", "train_acc@1"):
        if key in cresult.metrics:
            rep.numbers[f"classifier_{key}"] = float(cresult.metrics[key])

    start = clock()
    report(on_progress, "recipe", 3, 5, message="training the judge (clean-image classifier)")
    net = train_judge(real.split("train"), epochs=1 if quick else 40)
    heldout = real.split("heldout")
    predicted, _ = judge(net, heldout.images)
    rep.numbers["judge_heldout_accuracy"] = float((predicted == heldout.labels).mean())
    rep.seconds["judge"] = clock() - start

    report(on_progress, "recipe", 4, 5, message="exporting float16 weights")
    assets = out / "assets"
    _, model_weights = latest_weights(out / "runs" / "digits")
    _, classifier_weights = latest_weights(out / "runs" / "digits-classifier", prefer="model")
    save_half(load_state_dict(model_weights), assets / ASSETS[0])
    save_half(load_state_dict(classifier_weights), assets / ASSETS[1])
    referee = Judge.fit_statistics(net, real)
    referee.save(assets / ASSETS[2])
    rep.numbers["real_heldout_digits_fd"] = referee.score(heldout.images, heldout.labels).digits_fd

    start = clock()
    report(on_progress, "recipe", 5, 5, message="measuring guidance scales")
    rep.scales = guidance_table(
        assets / ASSETS[0], assets / ASSETS[1], referee, scales=(0.0, 2.0) if quick else SCALES,
        num_samples=20 if quick else 200, steps="10" if quick else "25",
    )
    rep.seconds["guidance_table"] = clock() - start
    write_json_atomic(out / "recipe.json", rep.as_dict())
    return rep


def cfg_table(model_path: Path, guide_path: Path, referee: Judge, *, rows, num_samples: int, steps: str,
              seed: int = 0) -> list[dict]:
    """Judge accuracy and digits-FD of class-balanced samples of the CFG model at each (cfg scale,
    autoguidance) of ``rows`` (same seeds)."""
    from adm.api.generation import sample
    from adm.api.sources import ModelSource
    from adm.presets.training import DIGITS_CFG_MODEL, DIGITS_GUIDE_MODEL

    table = []
    for cfg_scale, autoguidance in rows:
        guide = {"guide_model": str(guide_path), "guide_flags": DIGITS_GUIDE_MODEL} if autoguidance else {}
        source = ModelSource(model_flags=DIGITS_CFG_MODEL, model_path=model_path, **guide)
        samples = sample(source=source, cfg_scale=cfg_scale, autoguidance=autoguidance, steps=steps,
                         num_samples=num_samples, classes="balanced", seed=seed, device="cpu")
        scores = referee.score(samples.images, samples.labels)
        table.append({"cfg_scale": cfg_scale, "autoguidance": autoguidance, "accuracy": scores.accuracy,
                      "digits_fd": scores.digits_fd, "num_samples": num_samples})
    return table


def run_guidance_recipe(out: str | Path, *, quick: bool = False, registry: Registry | None = None,
                        on_progress: ProgressFn | None = None) -> RecipeReport:
    """Train `digits-cfg` (from the shipped digits weights) and `digits-guide`, export both, measure."""
    from adm.hub.download import ensure_artifact
    from adm.presets.training import DIGITS_GUIDE_CHECKPOINT
    from adm.training import TrainConfig, fit_diffusion, latest_weights
    from adm.training.config import make_config
    from adm.training.rundir import read_run

    registry = registry or default_registry()
    out = Path(out)
    rep = RecipeReport(out)
    clock = time.perf_counter
    data = write_digits(out / "data" / "digits-train.npz", split="train", overwrite=True)
    shorten = {"iterations": 20, "save_every": 20, "log_every": 5, "snapshots": (10,)} if quick else {}
    init = {"init": str(ensure_artifact("digits-model", registry=registry))}  # fine-tuned, not trained anew
    for k, (name, extra) in enumerate((("digits-cfg", init), ("digits-guide", {})), start=1):
        preset = registry.training_preset(name, "diffusion")
        start = clock()
        report(on_progress, "recipe", k, 3, message=f"training {name} (adm train --preset {name})")
        config = make_config(TrainConfig, {**preset.train, **shorten, **extra, "data": str(data)})
        result = fit_diffusion(config, registry.network_flags(preset), out / "runs" / name, preset=name,
                               on_progress=on_progress)
        rep.seconds[name] = clock() - start
        rep.numbers[f"{name}_steps_trained"] = result.step
        if "loss" in result.metrics:
            rep.numbers[f"{name}_final_loss"] = float(result.metrics["loss"])

    report(on_progress, "recipe", 3, 3, message="exporting float16 weights, measuring guidance")
    assets = out / "assets"
    step, weights = (10, "model") if quick else DIGITS_GUIDE_CHECKPOINT
    save_half(load_state_dict(latest_weights(out / "runs" / "digits-cfg")[1]), assets / GUIDANCE_ASSETS[0])
    save_half(load_state_dict(read_run(out / "runs" / "digits-guide", step).weights(weights)), assets / GUIDANCE_ASSETS[1])
    start = clock()
    referee = Judge.load(ensure_artifact("digits-judge", registry=registry))
    heldout = Judge.fit_statistics(referee.net, load_digits().split("heldout"))  # what no model trained on
    rep.scales = cfg_table(assets / GUIDANCE_ASSETS[0], assets / GUIDANCE_ASSETS[1], heldout, rows=GUIDANCE_ROWS,
                           num_samples=20 if quick else 200, steps="10" if quick else "25")
    rep.seconds["guidance_table"] = clock() - start
    write_json_atomic(out / "recipe.json", rep.as_dict())
    return rep


__all__ = ["ASSETS", "GUIDANCE_ASSETS", "RecipeReport", "cfg_table", "guidance_table", "run_guidance_recipe", "run_recipe",
           "save_half"]
