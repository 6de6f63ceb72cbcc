"""`adm evaluate`: FID, sFID, Inception Score, precision and recall (OpenAI's evaluator protocol)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from adm.cli.common import console, err_console, guarded
from adm.cli.progress import RichProgress
from adm.data.images import ImageCollection
from adm.distributed import joined
from adm.errors import UsageError
from adm.evaluation.evaluate import (
    DEFAULT_BATCH_SIZE,
    KEY_FID,
    KEY_INCEPTION_SCORE,
    KEY_NUM_REF,
    KEY_NUM_SAMPLES,
    KEY_PRECISION,
    KEY_RECALL,
    KEY_SFID,
    default_reference,
    make_reference,
    open_samples,
)
from adm.evaluation.evaluate import evaluate as run_evaluation
from adm.evaluation.reference import REF_MAX_IMAGES
from adm.fileio import write_text_atomic

ROWS = (
    ("Inception Score", KEY_INCEPTION_SCORE, "{:.4f}"),
    ("FID", KEY_FID, "{:.4f}"),
    ("sFID", KEY_SFID, "{:.4f}"),
    ("Precision", KEY_PRECISION, "{:.4f}"),
    ("Recall", KEY_RECALL, "{:.4f}"),
    ("samples", KEY_NUM_SAMPLES, "{:d}"),
    ("reference images", KEY_NUM_REF, "{:d}"),
)


@guarded
def evaluate(
    samples: Path | None = typer.Argument(
        None,
        metavar="SAMPLES",
        help="Samples: an npz (arr_0 uint8 [N, H, W, 3]) or a folder of images.",
        show_default=False,
    ),
    ref: Path | None = typer.Option(
        None,
        "--ref",
        help="Reference: an ADM reference batch (mu/sigma/mu_s/sigma_s + arr_0), an npz of images or a "
        "folder. Default: OpenAI's ImageNet batch for the samples' resolution, from the cache.",
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
        "or auto: digits for 16x16 samples, else inception.",
    ),
    judge: Path | None = typer.Option(
        None, "--judge", help="Digits judge weights (default: the one shipped with adm).", show_default=False
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

    if metric not in ("auto", "inception", "digits"):
        raise UsageError(f"unknown metric {metric!r}", "choose auto, inception or digits")
    collection = open_samples(samples) if make_ref is None else None  # one walk of a folder
    if collection is not None and _metric(metric, collection) == "digits":
        _evaluate_digits(samples, judge, json_out)
        return
    with joined(device) as dist, RichProgress(enabled=dist.is_main) as progress:
        on_progress = progress if dist.is_main else None
        if make_ref is not None:
            path = make_reference(
                make_ref,
                output,
                max_images=max_images,
                batch_size=batch_size,
                inception_weights=inception_weights,
                download=download,
                dist=dist,
                on_progress=on_progress,
            )
        else:
            if ref is None:
                name, ref = default_reference(collection, download=download)
                if dist.is_main:
                    err_console.print(
                        f"reference: {name} ({ref})", highlight=False, soft_wrap=True
                    )
            metrics = run_evaluation(
                collection,
                ref,
                batch_size=batch_size,
                inception_weights=inception_weights,
                download=download,
                cache=not no_cache,
                dist=dist,
                on_progress=on_progress,
            )
    if not dist.is_main:
        return
    if make_ref is not None:
        console.print(f"reference batch written to {path}", highlight=False, soft_wrap=True)
        return
    console.print(_table(metrics, samples, ref))
    if json_out is not None:
        record = {**metrics, "samples": str(samples), "ref": str(ref)}
        write_text_atomic(json_out, json.dumps(record, indent=2) + "\n")
        console.print(f"metrics written to {json_out}", highlight=False, soft_wrap=True)


def _table(metrics: dict, samples: Path, ref: Path) -> Table:
    table = Table(title=f"{samples} vs {ref}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for label, key, fmt in ROWS:
        value = metrics.get(key)
        table.add_row(label, "n/a (no reference images)" if value is None else fmt.format(value))
    return table


def _metric(metric: str, collection: ImageCollection) -> str:
    if metric != "auto":
        return metric
    return "digits" if (collection.height, collection.width) == (16, 16) else "inception"


def _evaluate_digits(samples: Path, judge: Path | None, json_out: Path | None) -> None:
    from adm.evaluation.digits_judge import evaluate_digits
    from adm.hub.download import ensure_artifact

    metrics = evaluate_digits(samples, judge or ensure_artifact("digits-judge"))
    table = Table(title=f"{samples} (digits judge)", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    accuracy = metrics["digits_accuracy"]
    table.add_row("judge accuracy (vs requested labels)", "n/a (no labels)" if accuracy is None else f"{accuracy:.4f}")
    table.add_row("digits-FD (vs real digits)", f"{metrics['digits_fd']:.4f}")
    table.add_row("samples", str(metrics["num_samples"]))
    console.print(table)
    if json_out is not None:
        write_text_atomic(json_out, json.dumps({**metrics, "samples": str(samples)}, indent=2) + "\n")
        console.print(f"metrics written to {json_out}", highlight=False, soft_wrap=True)
