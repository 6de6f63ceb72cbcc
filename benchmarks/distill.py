"""Consistency distillation of the guided `digits` sampler (issue 24): quality against CPU-minutes.

Two stages, each resumable:

* ``distil --variant NAME``: ``adm.distill`` of the shipped `digits` preset (classifier-guided at its
  own scale) on the digits training split, in ``benchmarks/.results/distill/NAME`` (a run dir:
  calling it again continues). The process's CPU time (all its threads, ``time.process_time``;
  ``--workers 0`` keeps the data loading in-process) is written beside every checkpoint to
  ``clock.jsonl`` in the run dir, so the frontier is quality against CPU-minutes, not wall time on
  a shared machine. Run two variants at once with ``--threads 1`` each.
* ``score``: every checkpoint of every variant run so far (raw and EMA 0.999 weights) at 1, 2 and
  4 steps of the ``cm`` sampler on the student's own training grid, against DDPM-250 guided (the
  teacher's best sampler), the best 15-evaluation recipe of docs/sampling.md and the teacher's
  ODE itself (the guided Heun steps the student learns, chained over the same grid). Every cell:
  200 class-balanced samples, seeds 1, 2, 3 (mean ± sd over seeds); judge accuracy on the labels
  asked for; digits-FD against the 359 held-out real digits (the other tables' reference) and
  against all real digits. Cached per configuration (JSON lines).

``--update-docs`` writes the tables into docs/distill.md, the frontier plot
docs/distill/fd-vs-cpu-minutes.png and sample grids docs/distill/*.png.

    nice python benchmarks/distill.py distil --variant g4 --threads 1 &
    nice python benchmarks/distill.py distil --variant n18 --threads 1 &   # a variant, on the other core
    nice python benchmarks/distill.py score --update-docs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sampler_quality import config_key, judged_session  # noqa: E402

from adm.recipes.digits_cm import DISTILL, SHIPPED, SHIPPED_EMA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RESULTS = ROOT / "benchmarks" / ".results"
RUNS = RESULTS / "distill"
SEEDS = (1, 2, 3)
NUM_SAMPLES = 200
GRID_SAMPLES = 30
# cm's --steps: the top level alone, else indices into the 18-level training grid (σ 10, 7.6, 5.7, 4.3,
# ...). Re-noising high up (σ 5.7) measured best for two steps, and more steps at lower levels no
# better (seed 4, not one of the table's; docs/distill.md).
STEPS = ("1", "0,2", "0,1,2,3")
EMA = SHIPPED_EMA
# What every variant shares: the recipe `adm recipe digits-cm` ships (adm.recipes.digits_cm.DISTILL),
# issue 24's plain recipe for an ε-prediction teacher.
RECIPE = {k: v for k, v in DISTILL.items() if k != "scales"}
VARIANTS = {
    "g4": {"scales": 18},  # the recipe: Song et al.'s CIFAR-10 grid, 4 levels per step
    "n18": {"scales": 18, "levels_per_step": 1},  # one level per step (the first design)
    "n12": {"scales": 12, "levels_per_step": 1},  # fewer links to chain; the teacher's ODE scores the same on it
}
# The references, sampled from the `digits` preset (classifier-guided at its scale).
REFERENCES_FAST = {"sampler": "dpm++2m-sde", "steps": "15", "spacing": "time", "guidance_interval": (0.0, 0.7)}
REFERENCES = {
    "DDPM-250": {"sampler": "ddpm", "steps": "250"},
    # the fastest recipe of docs/sampling.md at DDPM-250's quality (fp32 here)
    "dpm++2m-sde 15, time grid, guided t/T ≤ 0.7": REFERENCES_FAST,
}
START, END = "<!-- distill-measured:start -->", "<!-- distill-measured:end -->"
GSTART, GEND = "<!-- distill-grids:start -->", "<!-- distill-grids:end -->"
SSTART, SEND = "<!-- distill-speed:start -->", "<!-- distill-speed:end -->"


# --------------------------------------------------------------------------------------------
# Distillation, with the process's CPU time beside every checkpoint


def data_file() -> Path:
    from adm.data.digits import write_digits

    path = RESULTS / "digits-train.npz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_digits(path, split="train")
    return path


def read_clock(run: Path) -> dict[int, dict]:
    path = run / "clock.jsonl"
    if not path.is_file():
        return {}
    return {r["step"]: r for r in map(json.loads, path.read_text().splitlines()) if r}


def distil(variant: str, iterations: int | None) -> None:
    import adm
    from adm.training.rundir import newest_checkpoint

    run = RUNS / variant
    options = {**RECIPE, **VARIANTS[variant], **({"iterations": iterations} if iterations else {})}
    clock = read_clock(run)
    newest = newest_checkpoint(run) if run.is_dir() else None
    base = {"cpu_s": 0.0, "wall_s": 0.0}
    if newest is not None and clock:
        # a stop between checkpoints saves one without a clock record: extrapolate at the run's pace
        last = clock[max(s for s in clock if s <= newest.step)]
        base = {k: last[k] * newest.step / last["step"] for k in base}
    cpu0, wall0 = time.process_time(), time.perf_counter()
    every = options["save_every"]

    def on_progress(event) -> None:
        step = int(event.completed)
        if event.message is None and (step % every == 0 or step == options["iterations"]) and step not in clock:
            clock[step] = {"step": step, "cpu_s": base["cpu_s"] + time.process_time() - cpu0,
                           "wall_s": base["wall_s"] + time.perf_counter() - wall0}
            with open(run / "clock.jsonl", "a") as f:
                f.write(json.dumps(clock[step]) + "\n")
            print(json.dumps({"variant": variant, **clock[step], **event.info}), flush=True)

    adm.distill("digits", run_dir=run, data=str(data_file()), device="cpu", on_progress=on_progress, **options)


# --------------------------------------------------------------------------------------------
# Scoring


class Rows:
    """Counts a network's evaluations (rows of its batches) through a forward pre-hook."""

    def __init__(self, module):
        self.rows = 0
        module.register_forward_pre_hook(lambda _m, args: self._count(args[0]))

    def _count(self, x):
        self.rows += x.shape[0]


def to_uint8(x):
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(dtype=__import__("torch").uint8).permute(0, 2, 3, 1).numpy()


def teacher_ode(variant: str, seed: int, num_samples: int):
    """The teacher's ODE on the variant's grid: the guided Heun steps the student learns, chained
    from σ_max·z (the same draw of z as ``adm sample``'s is not needed: seeds differ per row anyway)."""
    import torch

    from adm.api.distill import resolve_distill
    from adm.training.distill import distill_levels

    options = {**RECIPE, **VARIANTS[variant]}
    run = resolve_distill("digits", run_dir=RESULTS / "distill-ode-unused", data=str(data_file()), device="cpu",
                          **{k: options[k] for k in ("sigma_max", "scales", "teacher_solver", "batch_size", "workers")})
    levels = distill_levels(run.flags, options["scales"])
    rows = Rows(run.setup.loaded.model)
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(num_samples) % 10
    x = torch.randn(num_samples, 3, 16, 16, generator=generator) * float(levels[0])
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(len(levels) - 1):
            x = run.step(x, float(levels[i]), float(levels[i + 1]), labels)
    seconds = time.perf_counter() - start
    return to_uint8(x), labels.numpy(), {"nfe": rows.rows / num_samples, "seconds_per_image": seconds / num_samples}


def sample(config: dict, num_samples: int):
    """(images, labels, counts) of one configuration."""
    import adm
    import adm.api.setup as setup
    from adm.api.sources import ModelSource

    if config["kind"] == "ode":
        return teacher_ode(config["variant"], config["seed"], num_samples)
    counted: list[Rows] = []
    real_load = setup.load_networks

    def counting_load(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        counted.append(Rows(loaded.model))
        return loaded

    if config["kind"] == "student":
        run = RUNS / config["variant"]
        weights = {"weights": "ema", "ema_rate": EMA} if config["weights"] == "ema" else {"weights": "model"}
        source = ModelSource(run_dir=Path(f"{run}@{config['step']}"), **weights)
        scales = {**RECIPE, **VARIANTS[config["variant"]]}["scales"]
        options = {"sampler": "cm", "steps": config["steps"], "sampler_options": {"karras_steps": scales}}
    else:
        source = ModelSource(preset="digits")
        options = dict(REFERENCES[config["reference"]])
    setup.load_networks = counting_load
    try:
        start = time.perf_counter()
        samples = adm.sample(source=source, num_samples=num_samples, batch_size=num_samples, seed=config["seed"],
                             classes="balanced", device="cpu", **options)
        seconds = time.perf_counter() - start
    finally:
        setup.load_networks = real_load
    return samples.images, samples.labels, {"nfe": counted[0].rows / num_samples, "seconds_per_image": seconds / num_samples}


def measure(config: dict, judges) -> dict:
    heldout, everything = judges
    images, labels, counts = sample(config, NUM_SAMPLES)
    scores = heldout.score(images, labels)
    return {"config": config, "num_samples": NUM_SAMPLES, "accuracy": scores.accuracy, "digits_fd": scores.digits_fd,
            "digits_fd_all_real": everything.score(images, None).digits_fd, **counts}


def checkpoints(variant: str) -> list[int]:
    """The variant's checkpoints with their CPU time recorded (a stop between them saves one without)."""
    run = RUNS / variant
    clock = read_clock(run)
    return sorted(step for p in run.glob("model*.pt") if (step := int(p.stem[-6:])) in clock) if run.is_dir() else []


def configs() -> list[dict]:
    out = [{"kind": "reference", "reference": name, "seed": s} for name in REFERENCES for s in SEEDS]
    for variant in VARIANTS:
        if not checkpoints(variant):
            continue
        out += [{"kind": "ode", "variant": variant, "seed": s} for s in SEEDS]
        for step in reversed(checkpoints(variant)):  # the newest first: what the frontier ends with
            for weights in ("model", "ema"):
                out += [{"kind": "student", "variant": variant, "step": step, "weights": weights, "steps": k, "seed": s}
                        for k in STEPS for s in SEEDS]
    return out


# --------------------------------------------------------------------------------------------
# Tables


def over_seeds(records: dict[str, dict], config: dict) -> dict | None:
    rows = [records.get(config_key({**config, "seed": s})) for s in SEEDS]
    if any(r is None for r in rows):
        return None
    fds = [r["digits_fd"] for r in rows]
    return {"fd": statistics.mean(fds), "sd": statistics.stdev(fds), "fd_all": statistics.mean(r["digits_fd_all_real"] for r in rows),
            "acc": statistics.mean(r["accuracy"] for r in rows), "nfe": rows[0]["nfe"],
            "sec": statistics.mean(r["seconds_per_image"] for r in rows), "by_seed": fds}


def steps_label(steps: str) -> str:
    count = len(steps.split(","))
    return "1 step" if count == 1 else f"{count} steps ({steps})"


def fmt(p: dict, base: dict | None) -> str:
    ratio = f" ({p['fd'] / base['fd']:.2f}×)" if base else ""
    return f"{p['fd']:.1f} ± {p['sd']:.1f}{ratio} | {p['fd_all']:.1f} | {p['acc']:.3f}"


def tables(records: dict[str, dict]) -> tuple[str, list[tuple[str, list[tuple[float, float]]]]]:
    ddpm = over_seeds(records, {"kind": "reference", "reference": "DDPM-250"})
    lines = [f"{NUM_SAMPLES} class-balanced samples per seed, seeds {', '.join(map(str, SEEDS))} (the same in every "
             "row); mean ± sd over the seeds; the ratio is to DDPM-250's mean. digits-FD against the 359 held-out "
             "real digits (lower is better) and against all real digits; judge accuracy on the labels asked for; "
             "NFE: network evaluations per image (the classifier's gradients not counted); seconds per image on "
             "this shared 2-core CPU, batch 200 (indicative).", "",
             "| sampler | NFE | digits-FD (held-out) | digits-FD (all) | accuracy | s / image |", "|---|---|---|---|---|---|"]
    for name in REFERENCES:
        p = over_seeds(records, {"kind": "reference", "reference": name})
        if p:
            guided = "" if "guided" in name else ", guided"
            lines.append(f"| `digits` {name}{guided} | {p['nfe']:.0f} | {fmt(p, ddpm)} | {p['sec']:.4f} |")
    grids_shown: set[int] = set()
    for variant in VARIANTS:
        p = over_seeds(records, {"kind": "ode", "variant": variant})
        scales = VARIANTS[variant]["scales"]
        if p and scales not in grids_shown:  # one row per grid: the teacher's ODE is the same on it
            grids_shown.add(scales)
            lines.append(f"| the teacher's ODE (guided Heun, {scales} levels from σ 10) | {p['nfe']:.0f} | {fmt(p, ddpm)} | "
                         f"{p['sec']:.4f} |")
    frontier: list[tuple[str, list[tuple[float, float]]]] = []
    lines += ["", "The students, by checkpoint: digits-FD (held-out) mean ± sd over the seeds (its ratio to "
              "DDPM-250's), then judge accuracy; CPU-min: the distilling process's CPU time (one thread) up to "
              "the checkpoint. `ema`: the EMA of rate 0.999 (what the preset ships), `raw`: the weights themselves.", "",
              "| variant | step | CPU-min | weights | " + " | ".join(steps_label(k) for k in STEPS) + " |",
              "|---|---|---|---|" + "---|" * len(STEPS)]
    for variant in VARIANTS:
        clock = read_clock(RUNS / variant)
        curves: dict[str, list[tuple[float, float]]] = {}
        for step in checkpoints(variant):
            minutes = clock[step]["cpu_s"] / 60
            for weights in ("ema", "model"):
                cells = []
                for k in STEPS:
                    p = over_seeds(records, {"kind": "student", "variant": variant, "step": step, "weights": weights,
                                             "steps": k})
                    cells.append("–" if p is None else
                                 f"{p['fd']:.1f} ± {p['sd']:.1f} ({p['fd'] / ddpm['fd']:.2f}×), {p['acc']:.3f}")
                    if p is not None and k in STEPS[:2] and variant != "n12":  # the plot: 1 and 2 steps
                        label = "ema" if weights == "ema" else "raw"
                        curves.setdefault(f"{variant} {label}, {steps_label(k)}", []).append((minutes, p["fd"]))
                if any(c != "–" for c in cells):
                    label = "ema" if weights == "ema" else "raw"
                    lines.append(f"| {variant} | {step} | {minutes:.1f} | {label} | " + " | ".join(cells) + " |")
        frontier += list(curves.items())
    return "\n".join(lines), frontier


SPEED_BATCH = 50
SPEED_ROUNDS = 2
SPEED_ROWS = (("DDPM-250, guided", {"preset": "digits", "sampler": "ddpm", "steps": "250"}),
              ("dpm++2m-sde 15, guided t/T ≤ 0.7", {"preset": "digits", **REFERENCES_FAST}),
              ("`digits-cm`, 2 steps", {"preset": "digits-cm", "steps": STEPS[1]}),
              ("`digits-cm`, 1 step", {"preset": "digits-cm", "steps": "1"}))


def speed() -> str:
    """Seconds per image of the guided teacher's samplers and the shipped student, interleaved in one
    run (same batch, same threads), median of the rounds; the ratio is to DDPM-250's."""
    import adm

    seconds: dict[str, list[float]] = {name: [] for name, _ in SPEED_ROWS}
    for round_ in range(SPEED_ROUNDS + 1):  # round 0 warms up (first calls), on 2 images
        count = SPEED_BATCH if round_ else 2
        for name, options in SPEED_ROWS:
            options = dict(options)
            preset = options.pop("preset")
            start = time.perf_counter()
            adm.sample(preset, num_samples=count, batch_size=count, seed=round_, classes="balanced",
                       device="cpu", **options)
            if round_:
                seconds[name].append((time.perf_counter() - start) / count)
    base = statistics.median(seconds[SPEED_ROWS[0][0]])
    lines = [f"Interleaved in one run, batch {SPEED_BATCH}, median of {SPEED_ROUNDS} rounds (model loading included "
             "in every call, as a user pays it):", "", "| sampler | s / image | fewer seconds than DDPM-250 |", "|---|---|---|"]
    for name, _ in SPEED_ROWS:
        sec = statistics.median(seconds[name])
        lines.append(f"| {name} | {sec:.4f} | {base / sec:.0f}× |")
    return "\n".join(lines)


def grids(records: dict[str, dict]) -> str:
    """Pictures (seed 1, three of each digit) of DDPM-250, the teacher's ODE and the shipped student
    (the recipe's variant, its last step, the weights the preset ships) at 1, 2 and 4 steps."""
    from adm.data.grid import save_grid

    variant = next(v for v in VARIANTS if checkpoints(v))  # the recipe's, when it has run
    step = DISTILL["iterations"] if DISTILL["iterations"] in checkpoints(variant) else checkpoints(variant)[-1]
    shots = [("DDPM-250, guided", {"kind": "reference", "reference": "DDPM-250", "seed": 1}),
             ("the teacher's ODE", {"kind": "ode", "variant": variant, "seed": 1})]
    shots += [(f"student, {steps_label(k)}", {"kind": "student", "variant": variant, "step": step,
                                              "weights": SHIPPED, "steps": k, "seed": 1}) for k in STEPS]
    cells = []
    for k, (title, config) in enumerate(shots):
        images, _, _ = sample(config, GRID_SAMPLES)
        name = f"grid-{k}.png"
        save_grid(images, DOCS / "distill" / name, columns=10, min_cell=32)
        cells.append((title, f"distill/{name}"))
    header = "| " + " | ".join(title for title, _ in cells) + " |"
    weights = "raw weights" if SHIPPED == "model" else f"EMA {EMA:g}"
    return "\n".join([f"Seed 1, {GRID_SAMPLES} samples (three of each digit); the student: `{variant}` at step {step}, "
                      f"{weights} (what `digits-cm` ships).", "", header, "|" + "---|" * len(cells),
                      "| " + " | ".join(f"![]({path})" for _, path in cells) + " |"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=("distil", "score", "speed"))
    parser.add_argument("--variant", choices=tuple(VARIANTS), default="g4")
    parser.add_argument("--iterations", type=int, help="stop the distillation here (default: the recipe's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.stage == "distil":
        distil(args.variant, args.iterations)
        return
    if args.stage == "speed":
        table = speed()
        print(table)
        if args.update_docs:
            from report import replace_block

            replace_block(DOCS / "distill.md", SSTART, SEND, table)
        return
    from report import replace_block

    from adm.data.digits import load_digits
    from adm.evaluation.digits_judge import Judge

    cache_path = RESULTS / "distill.jsonl"
    everything, cache = judged_session(args.threads, cache_path)
    heldout = Judge.fit_statistics(everything.net, load_digits().split("heldout"))
    records = cache.setdefault(NUM_SAMPLES, {})
    for config in configs():
        if config_key(config) in records:
            continue
        record = measure(config, (heldout, everything))
        records[config_key(config)] = record
        with open(cache_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    table, frontier = tables(records)
    print(table)
    if args.update_docs:
        from report import line_chart

        replace_block(DOCS / "distill.md", START, END, table)
        replace_block(DOCS / "distill.md", GSTART, GEND, grids(records))
        line_chart(dict(frontier), DOCS / "distill" / "fd-vs-cpu-minutes.png",
                   title="digits-cm: held-out digits-FD vs CPU-minutes of distillation",
                   xlabel="CPU-minutes", ylabel="digits-FD (lower is better)", log_y=True)


if __name__ == "__main__":
    main()
