"""adm's metric stage against the original evaluator's own code, on identical activations.

What ``adm evaluate`` does after the Inception features are extracted, timed on the same
synthetic activations (pool3-like: non-negative, clustered, 2048 values) in both programs:

* ``pr``: precision/recall, ``adm.evaluation.stats.precision_recall`` against
  ``Evaluator.compute_prec_recall`` (its ``ManifoldEstimator``: TF float16 distances, NumPy
  partitions);
* ``is``: the Inception Score, adm's ``inception_score`` of the logits ``pool3 · W`` (its network
  returns them with pool3, so the product is part of feature extraction) against
  ``Evaluator.compute_inception_score`` (its TF softmax graph on pool3, the product included,
  NumPy KL), with one random-but-fixed ``W`` standing in for the graph's weights; ``is-fc``
  times adm with the product too;
* ``stats``: mean and covariance of pool3, adm's streaming ``Moments`` fed 64 vectors at a time
  (as feature extraction feeds it) against ``Evaluator.compute_statistics`` (``np.mean``,
  ``np.cov``).

The original's code is not part of adm and is not copied into it: ``--original`` names its
``evaluations/evaluator.py``, a guided-diffusion checkout or a bare git mirror of it (read with
``git show``), and ``--original-python`` a Python with TensorFlow, NumPy, SciPy, requests and tqdm
(e.g. a venv with ``tensorflow-cpu``). Its module is loaded from a temporary copy at run time;
no Inception graph is needed.

Every (program, stage) runs in a fresh process; rounds are interleaved, the order alternating,
and the medians and the ratio are reported, because the machine is shared. Peak memory is what
the process's resident set grew to above what it held with its inputs loaded (Linux's VmHWM,
reset after loading). adm runs as the ``adm`` command would (``OMP_WAIT_POLICY=PASSIVE``);
``--before-src`` adds a third program, adm imported from another source tree (``git archive
COMMIT src | tar -x -C DIR`` gives one), to measure a change::

    python benchmarks/evaluate_metrics.py --original /path/to/guided-diffusion \\
        --original-python /path/to/tf-venv/bin/python [--num-samples 10000] [--num-ref 10000] \\
        [--repeats 3] [--stages pr,is,is-fc,stats] [--before-src DIR/src] [--update-docs]

This file is also the child process of both sides (``--child``), so it imports neither adm nor
torch at the top: the original's side runs in a Python without them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

START, END = "<!-- evaluate-metrics:start -->", "<!-- evaluate-metrics:end -->"
DOCS = Path(__file__).resolve().parents[1] / "docs"
FEATURES = 2048
CLASSES = 1008
BATCH = 64  # vectors per Moments.update, as feature extraction feeds it
STAGES = {
    "pr": "precision / recall",
    "is": "Inception Score",
    "is-fc": "Inception Score, adm including pool3 · W",
    "stats": "pool3 mean / covariance",
}


# ------------------------------------------------------------------------------ the activations


def activations(n: int, seed: int, *, shift: float = 0.0, world: int = 0, clusters: int = 100) -> np.ndarray:
    """``n`` pool3-like float32 vectors: non-negative, around ``clusters`` shared centres, a low-rank
    spread and noise, with squared norms of a few hundred. ``shift`` moves a set away from the centres."""
    shared = np.random.default_rng(world)
    centres = shared.gamma(0.6, 0.5, size=(clusters, FEATURES))
    basis = shared.normal(size=(64, FEATURES)) * 0.08
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] * (1 - shift) + rng.normal(size=(n, 64)) @ basis
    x += rng.normal(size=(n, FEATURES)) * (0.15 + shift)
    return (np.maximum(x, 0) * 0.55).astype(np.float32)


def write_inputs(folder: Path, num_samples: int, num_ref: int) -> None:
    np.save(folder / "ref.npy", activations(num_ref, 1))
    np.save(folder / "samples.npy", activations(num_samples, 2, shift=0.1))
    w = np.random.default_rng(3).normal(size=(FEATURES, CLASSES)) * 0.05
    np.save(folder / "fc.npy", w.astype(np.float32))


# ------------------------------------------------------------------------------ one measurement (child)


def _status(key: str) -> int:
    """A ``/proc/self/status`` figure in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _measure(run) -> dict:
    """Seconds and peak resident-set growth of ``run()``, which returns what to report."""
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base = _status("VmRSS")
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": (_status("VmHWM") - base) / 2**20, "result": result}


def _adm(stage: str, folder: Path) -> dict:
    import torch

    from adm.evaluation.stats import Moments, inception_score, precision_recall

    samples = np.load(folder / "samples.npy")
    if stage == "pr":
        ref = np.load(folder / "ref.npy")
        precision_recall(ref[:16], samples[:16])  # warm-up
        return _measure(lambda: list(precision_recall(ref, samples)))
    if stage in ("is", "is-fc"):
        fc = torch.from_numpy(np.load(folder / "fc.npy"))
        pool = torch.from_numpy(samples)
        inception_score(pool[:16] @ fc)
        if stage == "is-fc":
            return _measure(lambda: inception_score(pool @ fc))
        logits = pool @ fc  # what adm's network returns beside pool3
        return _measure(lambda: inception_score(logits))
    features = torch.from_numpy(samples)

    def moments():
        m = Moments.zeros(FEATURES)
        for begin in range(0, len(features), BATCH):
            m.update(features[begin : begin + BATCH])
        np.save(folder / "sigma-adm.npy", m.cov())
        return float(m.mean().sum())

    return _measure(moments)


def _load_original(path: Path):
    if not hasattr(np, "bool"):  # the original's np.bool, removed in NumPy 1.24 and back in 2.0
        np.bool = np.bool_
    spec = importlib.util.spec_from_file_location("original_evaluator", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _original(stage: str, folder: Path, evaluator_py: Path) -> dict:
    original = _load_original(evaluator_py)
    tf = original.tf
    samples = np.load(folder / "samples.npy")
    evaluator = object.__new__(original.Evaluator)  # its __init__ would load the Inception graph
    evaluator.sess = tf.Session()
    evaluator.batch_size, evaluator.softmax_batch_size = 64, 512
    if stage == "pr":
        ref = np.load(folder / "ref.npy")
        evaluator.manifold_estimator = original.ManifoldEstimator(evaluator.sess)
        evaluator.manifold_estimator.warmup()
        return _measure(lambda: list(evaluator.compute_prec_recall(ref, samples)))
    if stage in ("is", "is-fc"):
        with evaluator.sess.graph.as_default():  # its _create_softmax_graph, our W for the graph's
            evaluator.softmax_input = tf.placeholder(tf.float32, shape=[None, FEATURES])
            logits = tf.matmul(evaluator.softmax_input, tf.constant(np.load(folder / "fc.npy")))
            evaluator.softmax = tf.nn.softmax(logits)
        evaluator.compute_inception_score(samples[:16])
        return _measure(lambda: evaluator.compute_inception_score(samples))

    def moments():
        stats = evaluator.compute_statistics(samples)
        np.save(folder / "sigma-original.npy", stats.sigma)
        return float(stats.mu.sum())

    return _measure(moments)


# ------------------------------------------------------------------------------ the comparison (parent)


def evaluator_source(original: Path, folder: Path) -> Path:
    """A temporary copy of the original's evaluator.py from a file, a checkout or a bare mirror."""
    if original.is_file():
        text = original.read_text()
    else:
        text = subprocess.run(["git", "-C", str(original), "show", "HEAD:evaluations/evaluator.py"],
                              check=True, capture_output=True, text=True).stdout
    path = folder / "original_evaluator.py"
    path.write_text(text)
    return path


def run_child(program: str, stage: str, folder: Path, evaluator_py: Path, args) -> dict:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if program in ("adm", "adm before"):
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # what the adm command sets
        if program == "adm before":
            env["PYTHONPATH"] = os.pathsep.join([str(args.before_src), *filter(None, [env.get("PYTHONPATH")])])
        cmd = [sys.executable, __file__, "--child", "adm", "--stage", stage, "--data", str(folder)]
    else:
        cmd = [args.original_python, __file__, "--child", "original", "--stage", stage, "--data", str(folder),
               "--original", str(evaluator_py)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{program} {stage} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _agreement(stage: str, folder: Path, adm: list, original: list) -> str:
    if stage == "stats":
        a, b = np.load(folder / "sigma-adm.npy"), np.load(folder / "sigma-original.npy")
        return f"covariance max |Δ| / max |Σ| = {np.abs(a - b).max() / np.abs(b).max():.1e}"
    if stage in ("is", "is-fc"):
        return f"IS {adm[0]:.6f} vs {original[0]:.6f}"
    return f"P/R {adm[0][0]:.4f}/{adm[0][1]:.4f} vs {original[0][0]:.4f}/{original[0][1]:.4f}"


def _seconds(rows: list[dict]) -> float:
    return statistics.median(r["seconds"] for r in rows)


def _peak(rows: list[dict]) -> float:
    return statistics.median(r["peak_mb"] for r in rows)


def table(runs: dict, stages: list[str], folder: Path, args) -> str:
    before = args.before_src is not None
    lines = [
        f"{args.num_samples:,} samples, {args.num_ref:,} reference vectors, {FEATURES} features "
        f"(synthetic pool3-like activations), {os.cpu_count()} logical CPUs shared with other work; "
        f"each run a fresh process, {args.repeats} interleaved rounds, medians (the range of the "
        f"rounds' ratios in brackets); ratio < 1: adm faster.",
        "",
        "| stage | adm | " + ("adm before | " if before else "") + "original | adm / original | "
        "peak memory adm | " + ("peak memory before | " if before else "") + "peak memory original | results |",
        "|---|---|---|---|---|---|---|" + ("---|---|" if before else ""),
    ]
    for stage in stages:
        adm, orig = runs[stage, "adm"], runs[stage, "original"]
        ratios = sorted(a["seconds"] / o["seconds"] for a, o in zip(adm, orig, strict=True))
        agree = _agreement(stage, folder, [r["result"] for r in adm], [r["result"] for r in orig])
        old = runs.get((stage, "adm before"))
        lines.append(
            f"| {STAGES[stage]} | {_seconds(adm):.1f} s | "
            + (f"{_seconds(old):.1f} s | " if before else "")
            + f"{_seconds(orig):.1f} s | {_seconds(adm) / _seconds(orig):.2f} ({ratios[0]:.2f}–{ratios[-1]:.2f}) | "
            f"{_peak(adm):.0f} MB | " + (f"{_peak(old):.0f} MB | " if before else "")
            + f"{_peak(orig):.0f} MB | {agree} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--original", type=Path, help="evaluator.py, a guided-diffusion checkout or git mirror")
    parser.add_argument("--original-python", default=None, help="a Python with TensorFlow for the original")
    parser.add_argument("--num-samples", type=int, default=10_000)
    parser.add_argument("--num-ref", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stages", default="pr,is,is-fc,stats")
    parser.add_argument("--before-src", type=Path, default=None,
                        help="also time adm imported from this src folder (e.g. git archive of an older commit)")
    parser.add_argument("--update-docs", action="store_true")
    parser.add_argument("--child", choices=["adm", "original"], help=argparse.SUPPRESS)
    parser.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        out = _adm(args.stage, args.data) if args.child == "adm" else _original(args.stage, args.data, args.original)
        print(json.dumps(out))
        return 0
    if args.original is None or args.original_python is None:
        parser.error("--original and --original-python are needed")
    stages = [s for s in args.stages.split(",") if s]
    for stage in stages:
        if stage not in STAGES:
            parser.error(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")
    programs = ["adm", "original"] + (["adm before"] if args.before_src is not None else [])
    runs: dict[tuple[str, str], list[dict]] = {(s, p): [] for s in stages for p in programs}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        write_inputs(folder, args.num_samples, args.num_ref)
        evaluator_py = evaluator_source(args.original, folder)
        for round_ in range(args.repeats):
            for i, stage in enumerate(stages):
                shift = (round_ + i) % len(programs)  # each program leads in turn
                for program in programs[shift:] + programs[:shift]:
                    r = run_child(program, stage, folder, evaluator_py, args)
                    runs[stage, program].append(r)
                    print(f"round {round_ + 1} {stage:<5} {program:<10} {r['seconds']:8.2f} s "
                          f"{r['peak_mb']:8.0f} MB  {r['result']}", file=sys.stderr, flush=True)
        text = table(runs, stages, folder, args)
    print(text)
    if args.update_docs:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from report import replace_block

        replace_block(DOCS / "performance.md", START, END, text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
