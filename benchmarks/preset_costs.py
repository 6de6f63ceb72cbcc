"""What the training presets cost: parameters, GFLOPs per image, and CPU seconds per training step.

Two jobs:

    python benchmarks/preset_costs.py count            # recount every built-in training preset and
                                                       # rewrite src/adm/presets/costs.json (seconds)
    python benchmarks/preset_costs.py time [--update-docs docs/presets.md]

``time`` measures training steps (forward, backward, AdamW; ``adm.spec.costs.time_training_step``)
of the networks for one's own data at batch 1 (``--batch-size``) on the CPU. Each measurement
runs in its own process (so a big network's memory is given back before the next), and the
presets are interleaved over rounds, so a slow phase of a shared machine hits them alike. The
big networks get fewer rounds and no warm-up step (``BIG``): their first step, which allocates
the gradients and AdamW's state, is then part of the figure, said so in the table. Reported:
the median seconds per step, the ratio to the smallest network's, and the FLOP rate achieved
(three forward passes' FLOPs per image per step, the counted backward included).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import statistics
import subprocess
import sys
from pathlib import Path

PRESETS = ("iddpm-cifar10", "lightweight-256", "adm-64", "adm-128", "adm-256")
BIG = {"adm-128", "adm-256"}  # one round, no warm-up: minutes each on a busy 2-core machine
START, END = "<!-- preset-costs:start -->", "<!-- preset-costs:end -->"


def count() -> None:
    from adm.core.fileio import write_json_atomic
    from adm.presets import default_registry
    from adm.presets.costs import costs_document, costs_path, count_costs

    registry = default_registry()
    costs = count_costs(registry.all_training_presets, registry)
    write_json_atomic(costs_path(), costs_document(costs))
    print(f"wrote {len(costs)} presets' costs to {costs_path()}")


def worker(name: str, batch_size: int, warmup: int) -> dict:
    """One preset, one process: the seconds of one timed step after ``warmup``."""
    from adm.api.catalog import measure_training_step
    from adm.presets import default_registry

    preset = default_registry().training_preset(name, "diffusion")
    timing = measure_training_step(preset, batch_size=batch_size, warmup=warmup, repeats=1)
    return {"preset": name, "seconds": timing.seconds[0], "threads": timing.threads}


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = names[0].strip() if names else cpu
    return f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"


def measure(args: argparse.Namespace) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {name: [] for name in args.presets}
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE")}  # as the adm command sets it
    for round_ in range(args.rounds):
        for name in args.presets:  # interleaved
            if name in BIG and round_ >= args.big_rounds:
                continue
            warmup = 0 if name in BIG else args.warmup
            command = [sys.executable, __file__, "--worker", name, "--batch-size", str(args.batch_size),
                       "--warmup", str(warmup)]
            out = subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout
            run = json.loads(out.strip().splitlines()[-1])
            runs[name].append({**run, "warmup": warmup})
            print(f"round {round_ + 1}: {name} {run['seconds']:.2f} s", file=sys.stderr, flush=True)
    return runs


def table(runs: dict[str, list[dict]], batch_size: int, note: str) -> str:
    from adm.presets import default_registry
    from adm.presets.costs import preset_cost

    registry = default_registry()
    median = {name: statistics.median(r["seconds"] for r in rs) for name, rs in runs.items() if rs}
    base = next(iter(median.values()))
    threads = {r["threads"] for rs in runs.values() for r in rs}
    lines = [
        f"Machine: {machine()}, {'/'.join(map(str, sorted(threads)))} threads; {datetime.date.today().isoformat()}. {note}",
        "",
        f"| preset | params | GFLOPs / image | CPU s / step (batch {batch_size}) | vs {next(iter(median))} | GFLOP/s | each step (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, seconds in median.items():
        cost = preset_cost(registry.training_preset(name, "diffusion"), registry, count=True)
        rate = 3 * cost.flops * batch_size / seconds / 1e9
        timed = runs[name]
        each = ", ".join(f"{r['seconds']:.1f}" for r in timed)
        how = f"{each}" + (" (the first step: no warm-up)" if timed[0]["warmup"] == 0 else " (each after a warm-up step)")
        gflops = f"{cost.gflops:.0f}" if cost.gflops >= 100 else f"{cost.gflops:.3g}"
        lines.append(f"| {name} | {cost.params / 1e6:.1f}M | {gflops} | {seconds:.2f} | "
                     f"{seconds / base:.1f}x | {rate:.0f} | {how} |")
    return "\n".join(lines)


def update_docs(path: Path, text: str) -> None:
    from adm.core.fileio import write_text_atomic

    doc = path.read_text() if path.is_file() else ""
    section = f"{START}\n{text}\n{END}"
    if START in doc and END in doc:
        doc = doc[: doc.index(START)] + section + doc[doc.index(END) + len(END):]
    else:
        doc = doc.rstrip() + "\n\n" + section + "\n"
    write_text_atomic(path, doc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("job", nargs="?", choices=("count", "time"), default="time")
    parser.add_argument("--presets", type=lambda s: s.split(","), default=list(PRESETS))
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--big-rounds", type=int, default=1)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--note", default="", help="said under the machine line (e.g. how busy it was)")
    parser.add_argument("--update-docs", type=Path, default=None, help="rewrite the marked section of this file")
    parser.add_argument("--save-runs", type=Path, default=None, help="write the raw timings here (JSON)")
    parser.add_argument("--from-runs", type=Path, default=None, help="render saved timings instead of measuring")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.batch_size, args.warmup)))
        return
    if args.job == "count":
        count()
        return
    runs = json.loads(args.from_runs.read_text()) if args.from_runs else measure(args)
    if args.save_runs:
        args.save_runs.write_text(json.dumps(runs, indent=1))
    text = table(runs, args.batch_size, args.note)
    print(text)
    if args.update_docs:
        update_docs(args.update_docs, text)


if __name__ == "__main__":
    main()
