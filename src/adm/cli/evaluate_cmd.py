"""`adm evaluate`: FID, sFID, Inception Score, precision and recall (OpenAI's evaluator protocol)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from adm.api.scoring import DEFAULT_BATCH_SIZE, REF_MAX_IMAGES
from adm.cli.common import console, guarded
from adm.cli.progress import RichProgress
from adm.core.errors import UsageError
from adm.core.fileio import write_text_atomic


@guarded
def evaluate(
    samples: Path | None = typer.Argument(
        None,
        metavar="SAMPLES",
        help="Samples: an npz (arr_0 uint8 [N, H, W, C]; C = 3 for the Inception metrics) or a folder of images "
        "(read as RGB).",
        show_default=False,
    ),
    ref: Path | None = typer.Option(
        None,
        "--ref",
        help="Reference: an ADM reference batch (mu/sigma/mu_s/sigma_s + arr_0), an npz of images or a "
        "folder. Default: OpenAI's ImageNet batch for the samples' resolution, from the cache. With the digits "
        "metric: 16x16 images whose judge features digits-FD is measured against (default: the real digits).",
        show_default=False,
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Also write the metrics to this JSON file.", show_default=False
    ),
    batch_size: int = typer.Option(
        DEFAULT_BATCH_SIZE, "--batch-size", help="Images per Inception batch."
    ),
    device: str | None = typer.Option(
        None,
        "--device",
        help="cpu, cuda, cuda:N or mps (default: the best available).",
        show_default=False,
    ),
    download: bool = typer.Option(
        False, "--download", help="Fetch the reference batch and Inception weights if not cached."
    ),
    inception_weights: Path | None = typer.Option(
        None,
        "--inception-weights",
        help="Use this Inception weights file (torch-fidelity format) instead of the cached one.",
        show_default=False,
    ),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Neither read nor write the reference feature cache."
    ),
    make_ref: Path | None = typer.Option(
        None,
        "--make-ref",
        metavar="DATA",
        help="Instead of evaluating: make an ADM reference batch of DATA (npz or folder); needs -o.",
        show_default=False,
    ),
    output: Path | None = typer.Option(
        None,
        "-o",
        "--output",
        help="Where --make-ref writes the reference batch (.npz).",
        show_default=False,
    ),
    max_images: int = typer.Option(
        REF_MAX_IMAGES,
        "--max-images",
        help="Images --make-ref keeps in arr_0 for precision/recall.",
    ),
    metric: str = typer.Option(
        "auto",
        "--metric",
        help="inception (FID, sFID, IS, P/R), digits (the digits demo's judge accuracy and digits-FD), "
        "a plugin's (entry points adm.metrics), or auto: the natural one for the samples (digits for 16x16), "
        "else inception.",
    ),
    judge: Path | None = typer.Option(
        None, "--judge", help="Digits judge weights (default: the one shipped with adm).", show_default=False
    ),
    gray_as_rgb: bool = typer.Option(
        False, "--gray-as-rgb", help="Inception metrics of grayscale (1-channel) samples and references: show each "
        "image as RGB, the channel three times (the common practice for grayscale FID). Without it they are refused.",
    ),
) -> None:
    """Inception Score, FID, sFID, precision and recall of samples, as OpenAI's evaluator computes them.

    Examples: `adm evaluate samples.npz` (against the cached ImageNet reference of that size),
    `adm evaluate samples.npz --ref VIRTUAL_imagenet256_labeled.npz --json metrics.json`,
    `adm evaluate --make-ref train_images/ -o my_ref.npz`. Runs under torchrun too.
    """
    if make_ref is not None:
        if samples is not None or ref is not None or json_out is not None:
            raise UsageError("--make-ref takes no SAMPLES, --ref or --json", "run it on its own")
        if output is None:
            raise UsageError("--make-ref needs -o REF.npz")
    else:
        if samples is None:
            raise UsageError(
                "name the SAMPLES to evaluate (an npz or a folder)",
                "or pass --make-ref DATA -o REF.npz",
            )
        if output is not None:
            raise UsageError("-o only applies to --make-ref", "use --json to save the metrics")

    from adm.api.scoring import (
        EvaluationRequest,
        choose_metric,
        evaluate_samples,
        make_reference,
        open_samples,
    )
    from adm.core.distributed import joined

    collection = open_samples(samples) if make_ref is None else None  # one walk of a folder
    spec = choose_metric(metric, collection) if collection is not None else None
    with joined(device if spec is None or spec.distributed else "cpu") as dist, \
            RichProgress(enabled=dist.is_main) as progress:
        on_progress = progress if dist.is_main else None
        if make_ref is not None:
            path = make_reference(make_ref, output, max_images=max_images, batch_size=batch_size,
                                  inception_weights=inception_weights, download=download, dist=dist,
                                  on_progress=on_progress, gray_as_rgb=gray_as_rgb)
        else:
            request = EvaluationRequest(ref=ref, batch_size=batch_size, inception_weights=inception_weights,
                                        judge=judge, download=download, cache=not no_cache, dist=dist,
                                        on_progress=on_progress, gray_as_rgb=gray_as_rgb)
            evaluation = evaluate_samples(collection, spec.name, request)
    if not dist.is_main:
        return
    if make_ref is not None:
        console.print(f"reference batch written to {path}", highlight=False, soft_wrap=True)
        return
    result = evaluation.result
    against = f" vs {result['ref']}" if result.get("ref") else f" ({spec.name})"
    table = Table(title=f"{samples}{against}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, value in spec.table_rows(result):
        table.add_row(label, value)
    console.print(table)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps({**result, "metric": spec.name, "samples": str(samples)}, indent=2) + "\n")
        console.print(f"metrics written to {json_out}", highlight=False, soft_wrap=True)
