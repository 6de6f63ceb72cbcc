"""CPU thread policy: `adm sample --preset digits` on a quiet and on a busy machine.

Each variant runs the real command in a fresh process (OpenMP reads its wait policy when torch
loads); the "busy" rows run while other processes keep ``--load`` cores spinning, as on a shared
machine. Variants are interleaved over ``--repeats`` rounds; the median is kept.

* 1 thread;
* torch's default threads with OpenMP's default (spinning) wait policy: what adm did before;
* torch's default threads with adm's default (``OMP_WAIT_POLICY=PASSIVE``).

    python benchmarks/threads.py --update-docs
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

START, END = "<!-- threads:start -->", "<!-- threads:end -->"
DOCS = Path(__file__).resolve().parents[1] / "docs"
VARIANTS = {
    "1 thread": {"ADM_THREADS": "1"},
    "default threads, OpenMP spinning (before)": {"OMP_WAIT_POLICY": "ACTIVE"},
    "default threads, passive waiting (adm's default)": {},
}


def _spin(stop) -> None:
    while not stop.is_set():
        pass


def timed(env_changes: dict[str, str], out: Path, num_samples: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "ADM_THREADS", "OMP_NUM_THREADS")}
    env.update(env_changes)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "adm.cli", "sample", "--preset", "digits", "-n", str(num_samples),
                    "--out", str(out), "--overwrite", "-q"], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num-samples", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--load", type=int, default=1, help="cores kept busy in the busy rows")
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for machine in ("quiet", "busy"):
            stop = multiprocessing.Event()
            spinners = [multiprocessing.Process(target=_spin, args=(stop,)) for _ in range(args.load if machine == "busy" else 0)]
            for p in spinners:
                p.start()
            try:
                for _ in range(args.repeats):
                    for name, env in VARIANTS.items():
                        results.setdefault((machine, name), []).append(timed(env, Path(tmp) / "t.npz", args.num_samples))
            finally:
                stop.set()
                for p in spinners:
                    p.join()
    lines = [
        f"`adm sample --preset digits -n {args.num_samples}` (the preset's defaults: guided dpm++2m-sde, 25 evaluations) as a fresh process, "
        f"{os.cpu_count()} logical CPUs; busy = {args.load} other process(es) spinning; median of {args.repeats} "
        "interleaved runs, seconds (including start-up).",
        "",
        "| threads and wait policy | quiet machine | busy machine |",
        "|---|---|---|",
    ]
    for name in VARIANTS:
        lines.append(f"| {name} | {statistics.median(results[('quiet', name)]):.1f} s "
                     f"| {statistics.median(results[('busy', name)]):.1f} s |")
    text = "\n".join(lines)
    print(text)
    if args.update_docs:
        from report import replace_block

        replace_block(DOCS / "performance.md", START, END, text)


if __name__ == "__main__":
    main()
