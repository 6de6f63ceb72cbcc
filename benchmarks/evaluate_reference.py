"""adm evaluate against the numbers OpenAI's evaluator published for its own sample batch.

The README of ``openai/guided-diffusion:evaluations`` evaluates
``admnet_guided_upsampled_imagenet256.npz`` (ADM-G + ADM-U, 50,000 samples) against
``VIRTUAL_imagenet256_labeled.npz`` and prints IS 215.8370361328125, FID 3.9425574129223264,
sFID 6.140433703346162, precision 0.8265, recall 0.5309. This script computes the same with
``adm.evaluation.evaluator`` and prints both, with the differences::

    python benchmarks/evaluate_reference.py \\
        --samples admnet_guided_upsampled_imagenet256.npz \\
        --ref VIRTUAL_imagenet256_labeled.npz \\
        [--inception-weights weights-inception-2015-12-05-6726825d.pth] [--device cuda] \\
        [--pr-fp32] [--json out.json]

Without ``--inception-weights`` the cached ``inception`` artifact is used (``adm download inception``).
``--pr-fp32`` also computes precision/recall with exact float32 distances, to measure what the
float16 emulation changes. Both batches are at
https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/ .
The speed of the metric stage against the original's own code: ``benchmarks/evaluate_metrics.py``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ORIGINAL = {
    "inception_score": 215.8370361328125,
    "fid": 3.9425574129223264,
    "sfid": 6.140433703346162,
    "precision": 0.8265,
    "recall": 0.5309,
}
LABELS = {
    "inception_score": "Inception Score",
    "fid": "FID",
    "sfid": "sFID",
    "precision": "Precision",
    "recall": "Recall",
}


def _progress(event) -> None:
    if event.message:
        print(event.message, file=sys.stderr)
    if event.total and (event.completed == event.total or int(event.completed) % 5000 < 64):
        print(
            f"  {event.task}: {event.completed:.0f}/{event.total:.0f} {event.unit}", file=sys.stderr
        )


def _pr_fp32(samples: Path, ref: Path, weights: Path, device: str | None, batch_size: int):
    """Precision/recall with float32 distances (one more pass over both image sets)."""
    from adm.core.distributed import Dist, pick_device
    from adm.data.images import open_images
    from adm.evaluation.features import extract_all
    from adm.evaluation.inception import exact_fp32, load_inception
    from adm.evaluation.stats import precision_recall

    dist = Dist(device=pick_device(device))
    model = load_inception(weights, dist.device)
    with exact_fp32():
        feats = [
            extract_all(open_images(p), model, dist, batch_size=batch_size, moments=False).pool
            for p in (ref, samples)
        ]
        return precision_recall(*feats, fp16=False, device=dist.device)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--samples", type=Path, required=True, help="admnet_guided_upsampled_imagenet256.npz"
    )
    parser.add_argument("--ref", type=Path, required=True, help="VIRTUAL_imagenet256_labeled.npz")
    parser.add_argument("--inception-weights", type=Path, default=None)
    parser.add_argument("--device", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-cache", action="store_true", help="recompute the reference features")
    parser.add_argument("--pr-fp32", action="store_true", help="also precision/recall in float32")
    parser.add_argument(
        "--json", type=Path, default=None, help="write ours, theirs and the differences"
    )
    args = parser.parse_args(argv)

    from adm.evaluation import evaluate, inception_weights_path

    weights = inception_weights_path(args.inception_weights)
    start = time.perf_counter()
    ours = evaluate(
        args.samples,
        args.ref,
        batch_size=args.batch_size,
        device=args.device,
        inception_weights=weights,
        cache=not args.no_cache,
        on_progress=_progress,
    )
    seconds = time.perf_counter() - start

    print(
        f"\n{args.samples.name} vs {args.ref.name}: {ours['num_samples']} samples, "
        f"{ours['num_ref']} reference images, {seconds:.1f} s"
    )
    print(
        f"torch {torch.__version__}, python {platform.python_version()}, device "
        f"{args.device or ('cuda' if torch.cuda.is_available() else 'cpu')}"
    )
    print(f"\n{'metric':<16}{'adm':>14}{'original':>14}{'difference':>14}{'relative':>12}")
    rows = {}
    for key, label in LABELS.items():
        mine, theirs = ours[key], ORIGINAL[key]
        diff = mine - theirs
        rows[key] = {"adm": mine, "original": theirs, "difference": diff, "relative": diff / theirs}
        print(f"{label:<16}{mine:>14.6f}{theirs:>14.6f}{diff:>+14.6f}{diff / theirs:>+12.2e}")
    if args.pr_fp32:
        p, r = _pr_fp32(args.samples, args.ref, weights, args.device, args.batch_size)
        rows["precision_fp32"], rows["recall_fp32"] = p, r
        print(
            f"\nfloat32 distances: precision {p:.6f} ({p - ORIGINAL['precision']:+.6f}), "
            f"recall {r:.6f} ({r - ORIGINAL['recall']:+.6f})"
        )
    if args.json is not None:
        args.json.write_text(
            json.dumps({"metrics": ours, "comparison": rows, "seconds": seconds}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
