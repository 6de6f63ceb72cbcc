"""Training-step throughput and peak memory, fp32 vs bf16 (vs fp16), as ratios to fp32.

Runs adm's real training step (``adm.training.trainer.train_step``: diffusion loss, backward,
AdamW, EMA) on a small ADM model with synthetic in-memory batches, so data loading is not
measured. Each precision runs in its own subprocess (so its peak memory is its own), the
precisions are interleaved over ``--repeats`` rounds and the median is reported.

    python benchmarks/train_throughput.py                       # CPU, prints a markdown table
    python benchmarks/train_throughput.py --device cuda --precisions fp32,bf16,fp16
    python benchmarks/train_throughput.py --update-docs docs/performance.md

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` over the timed steps; on the CPU the
process's peak resident set (``ru_maxrss``) minus its size before the model was built. Both
include weights, gradients, AdamW and EMA state, and the activations of a step.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL_FLAGS = (
    "--image_size {size} --num_channels {channels} --channel_mult 1,2,2 --num_res_blocks 2 "
    "--attention_resolutions 16,8 --num_head_channels 32 --learn_sigma True --resblock_updown True "
    "--use_scale_shift_norm True --diffusion_steps 1000"
)
START, END = "<!-- train-throughput:start -->", "<!-- train-throughput:end -->"


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def worker(args: argparse.Namespace) -> dict:
    """One precision: warm up, time ``--steps`` steps, report img/s and peak memory."""
    import numpy as np
    import torch

    from adm.core.distributed import Dist, pick_device
    from adm.spec.flags import parse_model_flags
    from adm.training import TrainConfig
    from adm.training.diffusion import DiffusionTask
    from adm.training.trainer import DeviceBatch, Trainer, train_step

    torch.manual_seed(0)
    device = pick_device(args.device)
    before_model = _rss_kib()
    flags = parse_model_flags(MODEL_FLAGS.format(size=args.image_size, channels=args.channels))
    with tempfile.TemporaryDirectory() as tmp:  # the task wants a data source; the benchmark feeds batches itself
        np.savez(Path(tmp) / "d.npz", np.zeros((1, args.image_size, args.image_size, 3), np.uint8))
        config = TrainConfig(
            data=str(Path(tmp) / "d.npz"), batch_size=args.batch_size, precision=args.worker, ema_rates=(0.9999,)
        )
        task = DiffusionTask(flags, config)
    trainer = Trainer(task.model, config, Dist(device=device))
    x = torch.rand(args.batch_size, 3, args.image_size, args.image_size, device=device) * 2 - 1
    batch = DeviceBatch(x, torch.zeros(args.batch_size, dtype=torch.int64, device=device), list(range(args.batch_size)))

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(args.warmup):
        train_step(trainer, task, batch, args.batch_size)
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for _ in range(args.steps):
        train_step(trainer, task, batch, args.batch_size)
    sync()
    elapsed = time.perf_counter() - start
    if device.type == "cuda":
        peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        peak_mib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before_model, 0) / 1024
    return {
        "precision": args.worker,
        "img_per_sec": args.steps * args.batch_size / elapsed,
        "peak_mib": peak_mib,
        "params": sum(p.numel() for p in task.model.parameters()),
        "device": str(device),
    }


def machine(device: str) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = re.findall(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        cpu = names[0].strip() if names else cpu
    text = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if device.startswith("cuda") and torch.cuda.is_available():
        text = f"{torch.cuda.get_device_name()} ({text})"
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--update-docs", type=Path, default=None, help="rewrite the marked section of this file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    precisions = [p.strip() for p in args.precisions.split(",")]
    if "fp32" not in precisions:
        precisions.insert(0, "fp32")
    runs: dict[str, list[dict]] = {p: [] for p in precisions}
    passthrough = [
        "--device", args.device, "--image-size", str(args.image_size), "--channels", str(args.channels),
        "--batch-size", str(args.batch_size), "--steps", str(args.steps), "--warmup", str(args.warmup),
    ]
    for _ in range(args.repeats):
        for precision in precisions:  # interleaved, so slow phases of a shared machine hit all alike
            out = subprocess.run(
                [sys.executable, __file__, "--worker", precision, *passthrough], check=True, capture_output=True, text=True
            ).stdout
            runs[precision].append(json.loads(out.strip().splitlines()[-1]))

    median = {p: {k: statistics.median(r[k] for r in rs) for k in ("img_per_sec", "peak_mib")} for p, rs in runs.items()}
    base = median["fp32"]
    params = runs["fp32"][0]["params"]
    lines = [
        f"Machine: {machine(args.device)}.",
        f"Model: ADM U-Net {args.image_size}x{args.image_size}, {args.channels} channels, mult 1,2,2, 2 res blocks, "
        f"attention at 16 and 8, learned sigma ({params / 1e6:.1f}M parameters); batch {args.batch_size}; "
        f"median of {args.repeats} interleaved runs of {args.steps} steps after {args.warmup} warm-up steps.",
        "",
        "| precision | img/s | img/s vs fp32 | peak memory (MiB) | memory vs fp32 |",
        "|---|---|---|---|---|",
    ]
    for p in precisions:
        m = median[p]
        mem_ratio = m["peak_mib"] / base["peak_mib"] if base["peak_mib"] else float("nan")
        lines.append(
            f"| {p} | {m['img_per_sec']:.1f} | {m['img_per_sec'] / base['img_per_sec']:.2f}x | "
            f"{m['peak_mib']:.0f} | {mem_ratio:.2f}x |"
        )
    table = "\n".join(lines)
    print(table)
    if args.update_docs:
        text = args.update_docs.read_text() if args.update_docs.is_file() else ""
        section = f"{START}\n{table}\n{END}"
        if START in text and END in text:
            text = text[: text.index(START)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        args.update_docs.write_text(text)


if __name__ == "__main__":
    main()
