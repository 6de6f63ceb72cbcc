"""Sampling throughput: what adm's reproducibility and crash-safety cost, and what bf16 buys.

Three ways to draw the same number of guided DDPM samples from one small ADM model + classifier,
measured in the same run, interleaved over ``--repeats`` rounds (median kept):

* ``original-style``: ``adm.compat``'s ``p_sample_loop`` with a ``cond_fn``, noise from the global
  RNG, everything kept in memory — the way guided-diffusion's ``classifier_sample.py`` samples.
  This is the baseline (1.00x).
* ``adm fp32``: ``adm.sample(..., out=...)`` — per-sample generators, atomic shards, final npz,
  PNG grid and sidecar.
* ``adm bf16``: the same with ``precision="bf16"`` autocast.

    python benchmarks/sample_throughput.py                           # CPU, prints a markdown table
    python benchmarks/sample_throughput.py --update-docs docs/performance.md
    python benchmarks/sample_throughput.py --device cuda --num-samples 256 --batch-size 64
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

MODEL_FLAGS = (
    "--image_size 32 --num_channels 64 --channel_mult 1,2,2 --num_res_blocks 2 --attention_resolutions 16,8 "
    "--num_head_channels 32 --learn_sigma True --class_cond True --num_classes 10 --diffusion_steps 1000 "
    "--resblock_updown True --use_scale_shift_norm True"
)
CLASSIFIER_FLAGS = (
    "--image_size 32 --classifier_width 32 --classifier_channel_mult 1,2,2 --classifier_depth 1 "
    "--classifier_attention_resolutions 16,8 --classifier_num_head_channels 32 --classifier_num_classes 10"
)
START, END = "<!-- sample-throughput:start -->", "<!-- sample-throughput:end -->"


def checkpoints(folder: Path) -> tuple[Path, Path]:
    from adm.hub.checkpoints import save_state_dict
    from adm.spec.factory import build_classifier, build_model
    from adm.spec.flags import ClassifierFlags, parse_flags, parse_model_flags

    torch.manual_seed(0)
    model, classifier = folder / "model.pt", folder / "classifier.pt"
    save_state_dict(build_model(parse_model_flags(MODEL_FLAGS)).state_dict(), model)
    save_state_dict(build_classifier(parse_flags(ClassifierFlags, CLASSIFIER_FLAGS)).state_dict(), classifier)
    return model, classifier


def original_style(model_path, classifier_path, n, batch, steps, device) -> None:
    import adm.compat as compat
    from adm.sampling.guidance import classifier_grad_fn

    loaded = load(model_path, classifier_path, steps, device)
    diffusion = compat.create_gaussian_diffusion(steps=1000, learn_sigma=True, timestep_respacing=steps)
    cond_fn = classifier_grad_fn(loaded.classifier, 1.0)
    for _ in range(0, n, batch):
        y = torch.randint(0, 10, (batch,), device=device)
        diffusion.p_sample_loop(lambda x, t, y=None: loaded.model(x, t, y=y), (batch, 3, 32, 32),
                                cond_fn=cond_fn, model_kwargs={"y": y}, device=device)


def load(model_path, classifier_path, steps, device):
    import adm

    return adm.load_model(model_flags=MODEL_FLAGS, checkpoint=model_path, classifier_flags=CLASSIFIER_FLAGS,
                          classifier_checkpoint=classifier_path, steps=steps, device=device)


def adm_sample(model_path, classifier_path, n, batch, steps, device, precision, out: Path) -> None:
    import adm

    source = adm.ModelSource(model_flags=MODEL_FLAGS, model_path=model_path, classifier_flags=CLASSIFIER_FLAGS,
                             classifier_path=classifier_path)
    adm.sample(source=source, scale=1.0, steps=steps, num_samples=n, batch_size=batch, device=device,
               precision=precision, out=out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--num-samples", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", default="25")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--update-docs", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model, classifier = checkpoints(tmp)
        runs = {
            "original-style (compat p_sample_loop, global RNG, in memory)": lambda i: original_style(
                model, classifier, args.num_samples, args.batch_size, args.steps, args.device),
            "adm fp32 (per-sample seeds, shards, npz + grid)": lambda i: adm_sample(
                model, classifier, args.num_samples, args.batch_size, args.steps, args.device, "fp32", tmp / f"a{i}.npz"),
            "adm bf16": lambda i: adm_sample(
                model, classifier, args.num_samples, args.batch_size, args.steps, args.device, "bf16", tmp / f"b{i}.npz"),
        }
        times: dict[str, list[float]] = {name: [] for name in runs}
        for i in range(args.repeats + 1):  # round 0 warms up
            for name, run in runs.items():
                start = time.perf_counter()
                run(i)
                if i:
                    times[name].append(time.perf_counter() - start)
    base = statistics.median(next(iter(times.values())))
    lines = [
        f"Machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}.",
        f"Model: ADM U-Net 32x32 (64 channels, mult 1,2,2) + noisy classifier; {args.num_samples} guided DDPM samples, "
        f"{args.steps} steps, batch {args.batch_size}; median of {args.repeats} interleaved rounds after a warm-up round.",
        "",
        "| how | img/s | speed vs original-style |",
        "|---|---|---|",
    ]
    for name, values in times.items():
        t = statistics.median(values)
        lines.append(f"| {name} | {args.num_samples / t:.2f} | {base / t:.2f}x |")
    table = "\n".join(lines)
    print(table)
    if args.update_docs:
        text = args.update_docs.read_text()
        block = f"{START}\n{table}\n{END}"
        text = re.sub(re.escape(START) + ".*?" + re.escape(END), block, text, flags=re.S) if START in text else text + "\n" + block + "\n"
        args.update_docs.write_text(text)


if __name__ == "__main__":
    sys.exit(main())
