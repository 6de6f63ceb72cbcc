"""Seconds per guided image: the original's recipe against adm's fast ones, on the `digits` model.

Every recipe draws the same class-balanced, guided samples (classifier scale 1) through
``adm.sample``; recipes are interleaved over ``--repeats`` rounds after a warm-up round and the
median is kept, so a shared machine's slow phases hit all of them alike. The baseline is the
original's recipe: DDPM, 250 respaced steps, float32. Quality (digits-FD, judge accuracy) comes
from the cache of ``sampler_quality.py`` where it has the cell (fp32; bf16 cells are measured here
on the same samples).

    python benchmarks/fast_sampling.py --update-docs
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

RECIPES = [  # (label, sampler, steps, precision, extra options)
    ("DDPM 250, fp32 (the original's recipe)", "ddpm", "250", "fp32", {}),
    ("DDPM 25, fp32 (the preset's former default)", "ddpm", "25", "fp32", {}),
    ("dpm++2m-sde 25, fp32 (the preset's default)", "dpm++2m-sde", "25", "fp32", {}),
    ("dpm++2m-sde 25, bf16", "dpm++2m-sde", "25", "bf16", {}),
    ("dpm++2m-sde 25, bf16, guided where t/T <= 0.7", "dpm++2m-sde", "25", "bf16", {"guidance_interval": (0.0, 0.7)}),
    ("dpm++2m-sde 20, bf16", "dpm++2m-sde", "20", "bf16", {}),
    ("dpm++2m-sde 20, bf16, guided where t/T <= 0.7", "dpm++2m-sde", "20", "bf16", {"guidance_interval": (0.0, 0.7)}),
    ("dpm++2m-sde 15, bf16, guided where t/T <= 0.7", "dpm++2m-sde", "15", "bf16", {"guidance_interval": (0.0, 0.7)}),
    ("dpm++2m-sde 20, bf16, time spacing", "dpm++2m-sde", "20", "bf16", {"spacing": "time"}),
    ("dpm++2m-sde 15, bf16, time spacing, guided where t/T <= 0.7", "dpm++2m-sde", "15", "bf16",
     {"spacing": "time", "guidance_interval": (0.0, 0.7)}),
    ("dpm++2m 20, fp32", "dpm++2m", "20", "fp32", {}),
    ("unipc 10, bf16", "unipc", "10", "bf16", {}),
]
START, END = "<!-- fast-sampling:start -->", "<!-- fast-sampling:end -->"
DOCS = Path(__file__).resolve().parents[1] / "docs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quality-cache", type=Path, default=Path("benchmarks/.results/sampler_quality.jsonl"))
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from sampler_quality import config_key, load_cache

    import adm
    from adm.evaluation.digits_judge import Judge
    from adm.hub.download import ensure_artifact

    judge = Judge.load(ensure_artifact("digits-judge"))
    times: dict[str, list[float]] = {label: [] for label, *_ in RECIPES}
    scores: dict[str, object] = {}
    for round_ in range(args.repeats + 1):  # round 0 warms up
        for label, sampler, steps, precision, extra in RECIPES:
            start = time.perf_counter()
            samples = adm.sample("digits", sampler=sampler, steps=steps, precision=precision, scale=1.0,
                                 num_samples=args.num_samples, batch_size=args.num_samples, seed=1, device="cpu",
                                 **extra)
            if round_:
                times[label].append((time.perf_counter() - start) / args.num_samples)
            scores[label] = judge.score(samples.images, samples.labels)
    quality = load_cache(args.quality_cache).get(300, {})
    base = statistics.median(times[RECIPES[0][0]])
    lines = [
        f"Machine: {platform.machine()}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, CPU. "
        f"{args.num_samples} guided digits per run, median of {args.repeats} interleaved rounds after a warm-up.",
        "",
        f"| recipe | NFE | s / image | fewer seconds than DDPM 250 | digits-FD / accuracy, these {args.num_samples} "
        "| digits-FD / accuracy, 300 in fp32 (sampler_quality) |",
        "|---|---|---|---|---|---|",
    ]
    for label, sampler, steps, _precision, extra in RECIPES:
        t = statistics.median(times[label])
        options = {**extra, **({"guidance_interval": list(extra["guidance_interval"])} if "guidance_interval" in extra else {})}
        cell = quality.get(config_key({"sampler": sampler, "steps": steps, "scale": 1.0, **options}))
        here = f"{scores[label].digits_fd:.1f} / {scores[label].accuracy:.3f}"
        cached = f"{cell['digits_fd']:.1f} / {cell['accuracy']:.3f}" if cell else "–"
        lines.append(f"| {label} | {steps} | {t:.4f} | {base / t:.1f}x | {here} | {cached} |")
    text = "\n".join(lines)
    print(text)
    print(json.dumps({label: statistics.median(v) for label, v in times.items()}))
    if args.update_docs:
        from report import replace_block

        replace_block(DOCS / "performance.md", START, END, text)


if __name__ == "__main__":
    main()
