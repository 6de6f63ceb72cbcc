"""Classifier guidance, classifier-free guidance (CFG), autoguidance and CFG + classifier on digits.

For each method, the scale → (judge accuracy, digits-FD) curve, guided on every noise level and on
an interval of the middle levels only (Kynkäänniemi et al. 2024), with the sampler and number of
steps fixed in two regimes: the digits presets' default (``dpm++2m-sde``, 25 steps), where the
unguided model is almost always read as the digit asked for, and the deterministic ``dpm++2m``
with 20 steps, where it is misread a few percent of the time. The models: ``digits`` (the shipped
classifier-guided model) for classifier guidance, ``digits-cfg`` (the same model fine-tuned with
label dropout) for CFG, for autoguidance with ``digits-guide`` and for CFG + the digits classifier.
Every cell: class-balanced samples (``--num-samples``, 200), seeds 1, 2, 3 (the same seeds in
every cell; mean ± sd over seeds, and each best point's difference from the classifier's best seed
by seed); judge accuracy on the requested labels, and digits-FD against the 359 held-out real
digits (which no model trained on; lower is better) and against all real digits. CFG and
autoguidance run a second network evaluation per step where they are active: ``NFE`` counts every
network evaluation per sample (model + guide / null-label pass; the classifier's gradients are
counted apart).

``--guide-run RUN`` (a run dir of ``adm train --preset digits-guide``, e.g. the recipe's
``OUT/runs/digits-guide``) also measures which checkpoint guides best: its snapshots' raw and
EMA weights, at one autoguidance scale.

Results are cached per configuration (JSON lines), so an interrupted run continues (about half an
hour on 2 CPU cores in all). ``--update-docs`` writes the tables into docs/guidance.md (between
markers), the plots docs/guidance/fd-vs-scale-*.png and sample grids to docs/guidance/.

    nice python benchmarks/guidance.py --guide-run runs/digits-guide --table guides   # which guide to ship
    nice python benchmarks/guidance.py                                                # the curves
    nice python benchmarks/guidance.py --guide-run runs/digits-guide --update-docs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sampler_quality import config_key, judged_session  # noqa: E402

DOCS = Path(__file__).resolve().parents[1] / "docs"
# (sampler, steps) fixed in every cell of a regime: the presets' default, where the unguided digits
# model reads as the digit asked for almost always, and the deterministic solver, where it misses
# a few percent (docs/sampling.md) and guidance has something to fix.
REGIMES = {
    "default": {"sampler": "dpm++2m-sde", "steps": "25"},
    "ode": {"sampler": "dpm++2m", "steps": "20"},
}
SEEDS = (1, 2, 3)
# The middle noise levels, Kynkäänniemi et al. 2024's interval for EDM2-S (σ from 0.28 to 5.42 on
# data in [-1, 1]) mapped onto the digits models' cosine schedule: lo ≤ t/T ≤ hi.
INTERVAL = (0.17, 0.88)
# The checkpoints of `adm train --preset digits-guide` compared as guides: (step, weights).
GUIDES = ((250, "model"), (500, "model"), (1000, "model"), (1500, "model"), (1000, "ema"), (1500, "ema"))
GUIDE_SCALE = 0.5  # the autoguidance scale they are compared at
GUIDE_REGIME = "ode"  # and where (the regime in which autoguidance has something to fix)
ACCURACY_SLACK = 0.005  # "equal accuracy": within 3 of 600 samples of the classifier-guided best
START, END = "<!-- guidance-curves:start -->", "<!-- guidance-curves:end -->"
BSTART, BEND = "<!-- guidance-best:start -->", "<!-- guidance-best:end -->"
GSTART, GEND = "<!-- guidance-guides:start -->", "<!-- guidance-guides:end -->"
PSTART, PEND = "<!-- guidance-grids:start -->", "<!-- guidance-grids:end -->"
GRID_SAMPLES = 30  # per picture: three of each digit


@dataclass(frozen=True)
class Method:
    """One guidance recipe: the preset sampled, the options set to the scale (several: one knob
    for both), the options held fixed, and which interval options an interval sets."""

    name: str
    preset: str
    options: tuple[str, ...]
    scales: tuple[float, ...]
    intervals: tuple[str, ...]
    fixed: dict = field(default_factory=dict)


SCALES = (0.25, 0.5, 1.0)
METHODS = (
    Method("classifier", "digits", ("scale",), (*SCALES, 2.0), ("guidance_interval",)),
    Method("CFG", "digits-cfg", ("cfg_scale",), SCALES, ("cfg_interval",)),
    Method("autoguidance", "digits-cfg", ("autoguidance",), SCALES, ("autoguidance_interval",), {"guide": "digits-guide"}),
    Method("CFG + classifier", "digits-cfg", ("cfg_scale", "scale"), SCALES, ("cfg_interval", "guidance_interval")),
)
UNGUIDED = ("digits", "digits-cfg")


def cell(regime: str, method: Method, scale: float, interval: bool, seed: int) -> dict:
    config = {**unguided(regime, method.preset, seed), **method.fixed, **dict.fromkeys(method.options, scale)}
    for name in method.intervals if interval else ():
        config[name] = list(INTERVAL)
    return config


def unguided(regime: str, preset: str, seed: int) -> dict:
    return {"preset": preset, **REGIMES[regime], "scale": 0.0, "cfg_scale": 0.0, "autoguidance": 0.0, "seed": seed}


def guide_cell(step: int, weights: str, seed: int) -> dict:
    return {**unguided(GUIDE_REGIME, "digits-cfg", seed), "autoguidance": GUIDE_SCALE,
            "guide": f"digits-guide@{step}/{weights}"}


def curve_configs() -> list[dict]:
    return [config for regime in REGIMES for config in (
        *(unguided(regime, preset, seed) for preset in UNGUIDED for seed in SEEDS),
        *(cell(regime, m, s, iv, seed) for m in METHODS for iv in (False, True) for s in m.scales for seed in SEEDS))]


def guide_configs() -> list[dict]:
    return [guide_cell(step, weights, seed) for step, weights in GUIDES for seed in SEEDS]


def guide_path(label: str, guide_run: Path | None) -> str:
    """A config's guide: a preset name, or ``digits-guide@STEP/ema|model`` inside ``--guide-run``."""
    if "@" not in label:
        return label
    from adm.training.rundir import read_run

    if guide_run is None:
        raise SystemExit(f"{label} needs --guide-run (a run dir of `adm train --preset digits-guide`)")
    step, weights = label.split("@")[1].split("/")
    return str(read_run(guide_run, int(step)).weights(weights))


class Rows:
    """Counts a network's evaluations (rows of its batches) through a forward pre-hook."""

    def __init__(self):
        self.rows = 0

    def attach(self, module):
        module.register_forward_pre_hook(lambda _module, args: self._count(args[0]))

    def _count(self, x):
        self.rows += x.shape[0]


def sample(config: dict, num_samples: int, guide_run: Path | None):
    """Samples of one configuration, with the networks' evaluations counted."""
    import adm
    import adm.api.setup as setup
    from adm.api.sources import ModelSource

    networks, classifier = Rows(), Rows()
    real_load, real_guide = setup.load_networks, setup.load_guide

    def counting_load(*args, **kwargs):
        loaded = real_load(*args, **kwargs)
        networks.attach(loaded.model)
        if loaded.classifier is not None:
            classifier.attach(loaded.classifier)
        return loaded

    def counting_guide(*args, **kwargs):
        loaded = real_guide(*args, **kwargs)
        networks.attach(loaded.model)
        return loaded

    guide = guide_path(config["guide"], guide_run) if config.get("autoguidance") else None
    options = {k: v for k, v in config.items() if k not in ("preset", "guide", "seed")}
    options.update({k: tuple(v) for k, v in options.items() if k.endswith("interval")})
    setup.load_networks, setup.load_guide = counting_load, counting_guide
    try:
        start = time.perf_counter()
        samples = adm.sample(source=ModelSource(preset=config["preset"], guide_model=guide), num_samples=num_samples,
                             batch_size=num_samples, seed=config["seed"], device="cpu", **options)
        seconds = time.perf_counter() - start
    finally:
        setup.load_networks, setup.load_guide = real_load, real_guide
    return samples, {"nfe": networks.rows / num_samples, "classifier_gradients": classifier.rows / num_samples,
                     "seconds_per_image": seconds / num_samples}


def measure(config: dict, num_samples: int, judges, guide_run: Path | None) -> dict:
    heldout, everything = judges
    samples, counts = sample(config, num_samples, guide_run)
    scores = heldout.score(samples.images, samples.labels)
    return {"config": config, "num_samples": num_samples, "accuracy": scores.accuracy, "digits_fd": scores.digits_fd,
            "digits_fd_all_real": everything.score(samples.images, None).digits_fd, **counts}


@dataclass(frozen=True)
class Point:
    """One setting over the seeds."""

    fd: float
    fd_sd: float
    fd_all: float
    accuracy: float
    nfe: float
    gradients: float
    seeds: int


def point(records: dict[str, dict], configs: list[dict]) -> Point | None:
    found = [records[key] for c in configs if (key := config_key(c)) in records]
    if not found:
        return None
    fds = [r["digits_fd"] for r in found]
    return Point(statistics.mean(fds), statistics.stdev(fds) if len(fds) > 1 else 0.0,
                 statistics.mean(r["digits_fd_all_real"] for r in found), statistics.mean(r["accuracy"] for r in found), statistics.mean(r["nfe"] for r in found),
                 statistics.mean(r["classifier_gradients"] for r in found), len(found))


def curve(records, regime: str, method: Method, interval: bool) -> dict[float, Point]:
    points = {s: point(records, [cell(regime, method, s, interval, seed) for seed in SEEDS]) for s in method.scales}
    return {s: p for s, p in points.items() if p is not None}


def label(method: Method, interval: bool) -> str:
    return f"{method.name}, t/T in [{INTERVAL[0]:g}, {INTERVAL[1]:g}]" if interval else method.name


def fmt(p: Point) -> str:
    nfe = f"{p.nfe:.1f}" + (f" + {p.gradients:.0f} grad" if p.gradients else "")
    return f"{p.fd:.1f} ± {p.fd_sd:.1f} | {p.fd_all:.1f} | {p.accuracy:.3f} | {nfe}"


COLUMNS = "digits-FD held-out (mean ± sd) | digits-FD all real | judge accuracy | NFE per sample"


def regime_title(regime: str) -> str:
    return f"`{REGIMES[regime]['sampler']}` {REGIMES[regime]['steps']} steps"


def curves_table(records, regime: str) -> str:
    rows = [f"| method | scale | {COLUMNS} |", "|---|---|---|---|---|---|"]
    for preset in UNGUIDED:
        p = point(records, [unguided(regime, preset, seed) for seed in SEEDS])
        if p:
            rows.append(f"| `{preset}`, unguided | 0 | {fmt(p)} |")
    for method in METHODS:
        for interval in (False, True):
            for scale, p in curve(records, regime, method, interval).items():
                rows.append(f"| {label(method, interval)} | {scale:g} | {fmt(p)} |")
    return "\n".join(rows)


def best(records, regime: str) -> tuple[list[tuple[Method, bool, float, Point]], float | None]:
    """Each method's best point: the lowest held-out digits-FD at a judge accuracy no lower than
    the classifier-guided best's (less ``ACCURACY_SLACK``); the classifier's best is its lowest
    digits-FD."""
    classifier = [p for iv in (False, True) for p in curve(records, regime, METHODS[0], iv).values()]
    if not classifier:
        return [], None
    floor = min(classifier, key=lambda p: p.fd).accuracy - ACCURACY_SLACK
    chosen = []
    for method in METHODS:
        for interval in (False, True):
            fair = [(s, p) for s, p in curve(records, regime, method, interval).items() if p.accuracy >= floor]
            if fair:
                scale, p = min(fair, key=lambda x: x[1].fd)
                chosen.append((method, interval, scale, p))
    return chosen, floor


FLAGS = {"sampler": "--sampler", "steps": "--steps", "scale": "--scale", "cfg_scale": "--cfg-scale",
         "autoguidance": "--autoguidance", "guide": "--guide-model", "guidance_interval": "--guidance-interval",
         "cfg_interval": "--cfg-interval", "autoguidance_interval": "--autoguidance-interval"}


def command(config: dict) -> str:
    """The `adm sample` command of a configuration: every scale but a 0 that is the preset's default,
    the sampler and steps where they are not the preset's."""
    from adm.presets import default_registry

    preset = default_registry().preset(config["preset"])
    defaults = {"scale": preset.classifier_scale, "cfg_scale": preset.cfg_scale, "autoguidance": preset.autoguidance,
                "sampler": preset.sampling.sampler, "steps": preset.sampling.steps}
    parts = [f"adm sample --preset {config['preset']}"]
    for name, flag in FLAGS.items():
        value = config.get(name)
        default = value == defaults.get(name) and (value == 0 or name in ("sampler", "steps"))
        if value is None or default or (name == "guide" and not config.get("autoguidance")):
            continue
        parts.append(f"{flag} {value[0]:g},{value[1]:g}" if isinstance(value, list) else
                     f"{flag} {value:g}" if isinstance(value, float) else f"{flag} {value}")
    return " ".join(parts)


def paired(records, configs: list[dict], reference: list[dict], field: str) -> str:
    """The per-seed difference of ``field`` from ``reference`` (same seeds: their noise cancels), mean ± sd."""
    diffs = [records[config_key(a)][field] - records[config_key(b)][field] for a, b in zip(configs, reference, strict=True)
             if config_key(a) in records and config_key(b) in records]
    if not diffs:
        return "–"
    return f"{statistics.mean(diffs):+.1f} ± {statistics.stdev(diffs) if len(diffs) > 1 else 0.0:.1f}"


def best_table(records, regime: str) -> str:
    chosen, floor = best(records, regime)
    if not chosen:
        return "(not measured yet)"
    top = min((c for c in chosen if c[0] is METHODS[0]), key=lambda c: c[3].fd)
    reference = [cell(regime, top[0], top[2], top[1], seed) for seed in SEEDS]
    rows = [f"| method | best scale | {COLUMNS} | Δ held-out FD | Δ all-real FD | command |", "|---" * 9 + "|"]
    for method, interval, scale, p in chosen:
        configs = [cell(regime, method, scale, interval, seed) for seed in SEEDS]
        deltas = " | ".join(paired(records, configs, reference, f) for f in ("digits_fd", "digits_fd_all_real"))
        rows.append(f"| {label(method, interval)} | {scale:g} | {fmt(p)} | {deltas} | `{command(configs[0])}` |")
    return (f"Judge accuracy floor {floor:.3f} (the classifier-guided best's, less {ACCURACY_SLACK:g}); Δ: the "
            f"difference from the classifier-guided best ({label(top[0], top[1])} {top[2]:g}) seed by seed, mean ± sd "
            "over the seeds.\n\n" + "\n".join(rows))


def guides_table(records) -> str:
    rows = [f"| guide checkpoint | weights | {COLUMNS} |", "|---|---|---|---|---|---|"]
    for step, weights in GUIDES:
        p = point(records, [guide_cell(step, weights, seed) for seed in SEEDS])
        if p:
            rows.append(f"| `runs/digits-guide@{step}` | {'EMA 0.999' if weights == 'ema' else 'raw'} | {fmt(p)} |")
    return "\n".join(rows)


def plot(records, regime: str, path: Path) -> None:
    from report import line_chart

    series = {}
    for method in METHODS:
        for interval in (False, True):
            points = [(s, p.fd) for s, p in curve(records, regime, method, interval).items()]
            if points:
                series[method.name + (" (interval)" if interval else "")] = points
    line_chart(series, path, title=f"digits: held-out digits-FD vs guidance scale, {REGIMES[regime]['sampler']} "
               f"{REGIMES[regime]['steps']}", xlabel="guidance scale", ylabel="digits-FD (lower is better)", log_x=True)


def grids(records, regime: str, guide_run: Path | None) -> str:
    """Sample pictures (seed 1) of the unguided models and each method's best point, in a table."""
    from adm.data.grid import save_grid

    chosen, _ = best(records, regime)
    shots = [(f"`{preset}` unguided", unguided(regime, preset, 1)) for preset in UNGUIDED]
    for method in METHODS:  # its best point, with or without the interval
        found = [c for c in chosen if c[0] is method]
        if found:
            _, interval, scale, _ = min(found, key=lambda c: c[3].fd)
            shots.append((f"{label(method, interval)} {scale:g}", cell(regime, method, scale, interval, 1)))
    cells = []
    for k, (title, config) in enumerate(shots):
        samples, _ = sample(config, GRID_SAMPLES, guide_run)
        name = f"{regime}-{k}.png"
        save_grid(samples.images, DOCS / "guidance" / name, columns=10, min_cell=32)
        cells.append((title, f"guidance/{name}"))
    header = "| " + " | ".join(title for title, _ in cells) + " |"
    return "\n".join([header, "|" + "---|" * len(cells), "| " + " | ".join(f"![]({path})" for _, path in cells) + " |"])


def main() -> None:
    global SEEDS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=200)
    parser.add_argument("--guide-run", type=Path, help="a run dir of `adm train --preset digits-guide` (its checkpoints)")
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/.results/guidance.jsonl"))
    parser.add_argument("--seeds", type=int, default=len(SEEDS), help="seeds 1..N (fewer: a quick look)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", choices=("guides", "curves", "all"), default="all",
                        help="guides: only the guide comparison (needs --guide-run); curves: only the curves")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    SEEDS = tuple(range(1, args.seeds + 1))
    from report import replace_block

    from adm.data.digits import load_digits
    from adm.evaluation.digits_judge import Judge

    everything, cache = judged_session(args.threads, args.cache)
    heldout = Judge.fit_statistics(everything.net, load_digits().split("heldout"))
    records = cache.setdefault(args.num_samples, {})
    configs = (guide_configs() if args.guide_run and args.table != "curves" else []) + (
        curve_configs() if args.table != "guides" else [])
    for config in configs:
        if config_key(config) in records:
            continue
        record = measure(config, args.num_samples, (heldout, everything), args.guide_run)
        records[config_key(config)] = record
        with open(args.cache, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(json.dumps(record), flush=True)
    header = (f"{args.num_samples} class-balanced samples per seed, seeds {', '.join(map(str, SEEDS))} (the same "
              "seeds in every row), CPU, fp32; mean over the seeds.")
    blocks = {regime: "\n\n".join([f"{header} {regime_title(regime)}:", curves_table(records, regime)])
              for regime in REGIMES}
    chosen = {regime: f"{regime_title(regime)}. " + best_table(records, regime) for regime in REGIMES}
    guides = (f"{header} {regime_title(GUIDE_REGIME)}, autoguidance {GUIDE_SCALE:g} of `digits-cfg`:\n\n"
              + guides_table(records))
    print(*blocks.values(), *chosen.values(), guides, sep="\n\n")
    if args.update_docs:
        doc = DOCS / "guidance.md"
        for regime in REGIMES:
            tag = f"-{regime}"
            replace_block(doc, START.replace(":start", f"{tag}:start"), END.replace(":end", f"{tag}:end"), blocks[regime])
            replace_block(doc, BSTART.replace(":start", f"{tag}:start"), BEND.replace(":end", f"{tag}:end"), chosen[regime])
            replace_block(doc, PSTART.replace(":start", f"{tag}:start"), PEND.replace(":end", f"{tag}:end"),
                          grids(records, regime, args.guide_run))
            plot(records, regime, DOCS / "guidance" / f"fd-vs-scale-{regime}.png")
        if args.guide_run:
            replace_block(doc, GSTART, GEND, guides)


if __name__ == "__main__":
    main()
