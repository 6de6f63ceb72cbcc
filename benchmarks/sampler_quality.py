"""Sample quality against network evaluations (NFE) on the shipped `digits` model, for every sampler.

Three tables, each with the same class-balanced seeds in every cell, scored by the digits judge:
digits-FD against the real digits (lower is better) and the judge's accuracy on the requested
labels.

* ``targets`` (``--target-samples``, 300): the references (DDPM 250; DDIM 250, the ODE's limit)
  against the fast recipes, precise enough to compare within a few percent;
* ``interval``: what a guidance interval does (quality, classifier calls, time);
* ``nfe`` (``--grid-samples``, 100): every sampler at NFE 5 … 250, guided and unguided: the
  coarse map (FD at 100 samples is noisier and biased upwards; compare within the table);
* ``seeds``: the targets under several seeds (mean ± sd), since FD at 300 samples moves by ~10%
  from one seed to another.

Seconds per image are measured too, but on a shared machine they are only indicative:
``fast_sampling.py`` compares speeds interleaved.

Results are cached per configuration (JSON lines), so an interrupted run continues and a longer
one extends a shorter one. ``--update-docs`` writes the tables into docs/sampling.md (between
markers) and the plot docs/sampling/quality-vs-nfe.png.

    python benchmarks/sampler_quality.py                      # all three tables (hours on 2 CPU cores)
    python benchmarks/sampler_quality.py --table targets      # one of them
    python benchmarks/sampler_quality.py --update-docs
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

DOCS = Path(__file__).resolve().parents[1] / "docs"
SAMPLERS = ("ddpm", "ddim", "dpm++2m", "dpm++2m-sde", "heun", "unipc")
NFES = (5, 10, 15, 20, 25, 50, 100, 250)
INTERVALS = ((0.0, 1.0), (0.0, 0.9), (0.0, 0.7), (0.0, 0.5), (0.2, 0.9), (0.5, 1.0))
START, END = "<!-- sampler-quality:start -->", "<!-- sampler-quality:end -->"
ISTART, IEND = "<!-- guidance-interval:start -->", "<!-- guidance-interval:end -->"
TSTART, TEND = "<!-- sampler-targets:start -->", "<!-- sampler-targets:end -->"
SSTART, SEND = "<!-- sampler-seeds:start -->", "<!-- sampler-seeds:end -->"


def config_key(config: dict) -> str:
    return json.dumps(config, sort_keys=True)


def judged_session(threads: int, cache: Path) -> tuple[object, dict[int, dict[str, dict]]]:
    """What every digits-quality benchmark starts with: the thread count set, the digits judge
    loaded, and the records cached so far (by sample count, then configuration)."""
    from adm.evaluation.digits_judge import Judge
    from adm.hub.download import ensure_artifact

    torch.set_num_threads(threads)
    cache.parent.mkdir(parents=True, exist_ok=True)
    return Judge.load(ensure_artifact("digits-judge")), load_cache(cache)


def load_cache(path: Path) -> dict[int, dict[str, dict]]:
    """Records by sample count, then configuration (the same configuration is measured at 100 and 300)."""
    cache: dict[int, dict[str, dict]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                cache.setdefault(record["num_samples"], {})[config_key(record["config"])] = record
    return cache


class Counting:
    """Counts classifier forwards (one per guided step that the interval does not skip)."""

    def __init__(self, module):
        self.module, self.calls = module, 0

    def __getattr__(self, name):
        return getattr(self.module, name)

    def __call__(self, x, t):
        self.calls += 1
        return self.module(x, t)


def measure(config: dict, num_samples: int, judge) -> dict:
    import adm
    import adm.api.setup as setup

    counter: list[Counting] = []
    real_load = setup.load_networks

    def counting_load(*args, **kwargs):  # wrap the classifier to count its evaluations
        loaded = real_load(*args, **kwargs)
        if loaded.classifier is not None:
            loaded.classifier = Counting(loaded.classifier)
            counter.append(loaded.classifier)
        return loaded

    setup.load_networks = counting_load
    try:
        options = {k: v for k, v in config.items() if k in ("sampler", "steps", "scale", "spacing", "guidance_interval")}
        start = time.perf_counter()
        samples = adm.sample("digits", num_samples=num_samples, batch_size=100, seed=config.get("seed", 1),
                             device="cpu", **options)
        seconds = time.perf_counter() - start
    finally:
        setup.load_networks = real_load
    scores = judge.score(samples.images, samples.labels)
    return {
        "config": config, "num_samples": num_samples, "digits_fd": scores.digits_fd, "accuracy": scores.accuracy,
        "seconds_per_image": seconds / num_samples,
        "classifier_calls_per_batch": counter[0].calls / -(-num_samples // 100) if counter else 0,
    }


TARGETS = [("ddpm", 250), ("ddim", 250), ("ddpm", 25), ("ddpm", 10), ("dpm++2m-sde", 25), ("dpm++2m-sde", 20), ("dpm++2m", 20), ("dpm++2m-sde", 10),
           ("dpm++2m", 10), ("unipc", 10), ("unipc", 20), ("dpm++2m-sde", 15)]
# The original's guided DDIM breaks at the top of the cosine schedule (docs/sampling.md); with the
# guidance kept below t/T = 0.9 it is the guided ODE's reference.
REFERENCE_INTERVAL = [0.0, 0.9]  # the original's guided DDIM breaks above t/T 0.9
GUIDED_ODE_REFERENCE = {"sampler": "ddim", "steps": "250", "scale": 1.0, "guidance_interval": REFERENCE_INTERVAL}


# The ODE solvers guided as the reference is (below t/T 0.9), for a like-for-like comparison.
ODE_UNDER_REFERENCE_INTERVAL = [("dpm++2m", 20), ("unipc", 20)]


def target_configs() -> list[dict]:
    configs = [{"sampler": s, "steps": str(n), "scale": scale} for s, n in TARGETS for scale in (1.0, 0.0)]
    like_reference = [{**GUIDED_ODE_REFERENCE, "sampler": s, "steps": str(n)} for s, n in ODE_UNDER_REFERENCE_INTERVAL]
    return configs + [GUIDED_ODE_REFERENCE] + like_reference


SEED_RECIPES = [("ddpm", "250", 4), ("ddpm", "25", 4), ("ddpm", "10", 4), ("dpm++2m-sde", "10", 4),
                ("dpm++2m-sde", "20", 4), ("dpm++2m-sde", "25", 4), ("dpm++2m", "20", 4),
                ("unipc", "20", 4)]  # (sampler, steps, how many seeds)
FAST_INTERVAL = [0.0, 0.7]
# The same seeds with other options (guided only where t/T <= 0.7; a time-uniform grid): (sampler, steps, seeds, options)
VARIANT_SEED_RECIPES = [("dpm++2m-sde", "20", 4, {"guidance_interval": FAST_INTERVAL}),
                        ("dpm++2m-sde", "15", 4, {"guidance_interval": FAST_INTERVAL}),
                        ("dpm++2m-sde", "20", 4, {"spacing": "time"}),
                        ("dpm++2m-sde", "25", 4, {"spacing": "time"}),
                        ("dpm++2m-sde", "20", 4, {"spacing": "time", "guidance_interval": FAST_INTERVAL}),
                        ("dpm++2m-sde", "15", 4, {"spacing": "time", "guidance_interval": FAST_INTERVAL})]


def _seeded(config: dict, seed: int) -> dict:
    return {**config, **({"seed": seed} if seed > 1 else {})}


def _seed_recipes() -> list[tuple[str, str, int, dict]]:
    return [(s, n, seeds, {}) for s, n, seeds in SEED_RECIPES] + VARIANT_SEED_RECIPES


def _scales(options: dict) -> tuple[float, ...]:
    return (1.0,) if "guidance_interval" in options else (1.0, 0.0)  # an interval means nothing unguided


def seed_configs() -> list[dict]:
    """The targets again under other seeds: FD at 300 samples moves by ~10% from seed to seed."""
    return [_seeded({"sampler": s, "steps": n, "scale": scale, **options}, seed)
            for s, n, seeds, options in _seed_recipes() for scale in _scales(options) for seed in range(1, seeds + 1)]


def seed_table(records: dict[str, dict]) -> str:
    import statistics

    rows = ["| sampler | NFE | seeds | guided digits-FD (mean ± sd) | vs DDPM 250 | unguided digits-FD | vs DDPM 250 |",
            "|---|---|---|---|---|---|---|"]
    refs = {}
    for sampler, n, seeds, options in _seed_recipes():
        cells = []
        for scale in (1.0, 0.0):
            config = {"sampler": sampler, "steps": n, "scale": scale, **options}
            fds = [r["digits_fd"] for seed in range(1, seeds + 1) if (r := records.get(config_key(_seeded(config, seed))))]
            if scale not in _scales(options) or not fds:
                cells += ["–", "–"]
                continue
            mean = statistics.mean(fds)
            if (sampler, n, options) == ("ddpm", "250", {}):  # the first recipe
                refs[scale] = mean
            sd = statistics.stdev(fds) if len(fds) > 1 else 0.0
            ref = refs.get(scale)
            cells += [f"{mean:.1f} ± {sd:.1f} (n={len(fds)})", f"{mean / ref:.3f}x" if ref else "–"]
        extras = ([f"`--spacing {options['spacing']}`"] if "spacing" in options else []) + (
            [f"guided where t/T ≤ {options['guidance_interval'][1]:g}"] if "guidance_interval" in options else [])
        name = ", ".join([f"`{sampler}`", *extras])
        rows.append(f"| {name} | {n} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def nfe_configs() -> list[dict]:
    return [{"sampler": s, "steps": str(n), "scale": scale} for s in SAMPLERS for n in NFES for scale in (1.0, 0.0)]


def interval_configs() -> list[dict]:
    return [{"sampler": s, "steps": n, "scale": 1.0, "guidance_interval": list(iv)}
            for s, n in (("dpm++2m-sde", "20"), ("dpm++2m-sde", "15"), ("ddpm", "25"), ("ddim", "25"))
            for iv in INTERVALS]


def target_table(records: dict[str, dict]) -> str:
    rows = ["| sampler | NFE | guided: digits-FD | accuracy | vs reference | unguided: digits-FD | accuracy | vs reference |",
            "|---|---|---|---|---|---|---|---|"]

    def get(sampler, n, scale, **extra):
        return records.get(config_key({"sampler": sampler, "steps": str(n), "scale": scale, **extra}))

    refs = {}
    for scale in (1.0, 0.0):
        refs[("sde", scale)] = get("ddpm", 250, scale)
        refs[("ode", scale)] = get("ddim", 250, scale, **({"guidance_interval": REFERENCE_INTERVAL} if scale else {}))
    rows_wanted = [(s, n, s == "ddim") for s, n in TARGETS] + [(s, n, True) for s, n in ODE_UNDER_REFERENCE_INTERVAL]
    for sampler, n, below_reference in rows_wanted:
        cells = []
        kind = "ode" if sampler in ("ddim", "dpm++2m", "unipc") else "sde"
        for scale in (1.0, 0.0):
            r = get(sampler, n, scale, **({"guidance_interval": REFERENCE_INTERVAL} if below_reference and scale else {}))
            ref = refs[(kind, scale)]
            if r is None:
                cells += ["–", "–", "–"]
                continue
            ratio = f"{r['digits_fd'] / ref['digits_fd']:.3f}x {'DDPM' if kind == 'sde' else 'DDIM'} 250" if ref else "–"
            cells += [f"{r['digits_fd']:.1f}", f"{r['accuracy']:.3f}", ratio]
        name = f"`{sampler}`" + (f" (guided below t/T {REFERENCE_INTERVAL[1]:g})" if below_reference else "")
        rows.append(f"| {name} | {n} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def nfe_table(records: dict[str, dict], scale: float) -> str:
    rows = [f"| sampler | {' | '.join(str(n) for n in NFES)} |", "|---" * (len(NFES) + 1) + "|"]
    for sampler in SAMPLERS:
        cells = []
        for n in NFES:
            r = records.get(config_key({"sampler": sampler, "steps": str(n), "scale": scale}))
            cells.append(f"{r['digits_fd']:.1f} / {r['accuracy']:.3f} / {r['seconds_per_image'] * 1000:.0f}" if r else "–")
        rows.append(f"| `{sampler}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def interval_table(records: dict[str, dict]) -> str:
    rows = ["| sampler | interval (t/T) | digits-FD | judge accuracy | classifier calls per batch | s/img |",
            "|---|---|---|---|---|---|"]
    for config in interval_configs():
        r = records.get(config_key(config))
        if r:
            lo, hi = config["guidance_interval"]
            rows.append(f"| `{config['sampler']}` {config['steps']} | [{lo:g}, {hi:g}] | {r['digits_fd']:.1f} | "
                        f"{r['accuracy']:.3f} | {r['classifier_calls_per_batch']:.0f} | {r['seconds_per_image']:.3f} |")
    return "\n".join(rows)


def plot(records: dict[str, dict], path: Path) -> None:
    from report import line_chart

    series = {}
    for sampler in SAMPLERS:
        points = []
        for n in NFES:
            r = records.get(config_key({"sampler": sampler, "steps": str(n), "scale": 1.0}))
            if r and r["digits_fd"] < 400:  # keep diverged runs from flattening the chart
                points.append((n, r["digits_fd"]))
        if points:
            series[sampler] = points
    line_chart(series, path, title="digits, guided (scale 1): digits-FD vs network evaluations",
               xlabel="network evaluations (NFE)", ylabel="digits-FD (lower is better)", log_x=True, log_y=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target-samples", type=int, default=300)
    parser.add_argument("--grid-samples", type=int, default=100)
    parser.add_argument("--table", choices=("targets", "nfe", "interval", "seeds", "all"), default="all")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.results/sampler_quality.jsonl"))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    from report import replace_block

    judge, cache = judged_session(args.threads, args.cache)
    tables = {"targets": (target_configs(), args.target_samples), "interval": (interval_configs(), args.target_samples),
              "nfe": (nfe_configs(), args.grid_samples), "seeds": (seed_configs(), args.target_samples)}
    chosen = list(tables) if args.table == "all" else [args.table]
    results: dict[str, dict[str, dict]] = {}
    for name in tables:
        configs, n = tables[name]
        records = cache.setdefault(n, {})
        for config in configs if name in chosen else ():
            if config_key(config) in records:
                continue
            record = measure(config, n, judge)
            records[config_key(config)] = record
            with open(args.cache, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
        results[name] = records
    header = (f"class-balanced samples, seed 1 (the same seeds in every cell), {args.threads} thread(s), CPU, fp32. ")
    targets = f"{args.target_samples} {header}\n\n" + target_table(results["targets"])
    grid = "\n".join([
        f"{args.grid_samples} {header}Each cell: digits-FD / judge accuracy / milliseconds per image.",
        "", "Guided (classifier scale 1, the preset's):", "", nfe_table(results["nfe"], 1.0),
        "", "Unguided (scale 0):", "", nfe_table(results["nfe"], 0.0),
    ])
    interval = f"{args.target_samples} {header}\n\n" + interval_table(results["interval"])
    seeds = f"{args.target_samples} class-balanced samples per run, seeds 1, 2, ...\n\n" + seed_table(results["seeds"])
    print(targets, grid, interval, seeds, sep="\n\n")
    if args.update_docs:
        replace_block(DOCS / "sampling.md", TSTART, TEND, targets)
        replace_block(DOCS / "sampling.md", START, END, grid)
        replace_block(DOCS / "sampling.md", ISTART, IEND, interval)
        replace_block(DOCS / "sampling.md", SSTART, SEND, seeds)
        plot(results["nfe"], DOCS / "sampling" / "quality-vs-nfe.png")


if __name__ == "__main__":
    main()
