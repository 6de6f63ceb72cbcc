"""Training metrics: running sums on the device, ``metrics.jsonl`` in the run dir, plots, TensorBoard.

Sums stay on the device between log steps (no host sync per step); at a log step they are
averaged over ranks in one all-reduce and written by rank 0 as one JSON line. With ``--log
tensorboard`` (the optional extra ``adm-diffusion[tensorboard]``) rank 0 also writes each record
to TensorBoard event files in ``RUN/tb``: the training figures under ``train/``, the monitors'
numbers under ``eval/`` and their images (the sample grids) as images; ``metrics.jsonl`` is
written either way.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from adm.core.distributed import Dist
from adm.core.errors import UsageError
from adm.core.fileio import atomic_path, write_text_atomic

METRICS = "metrics.jsonl"
PLOT = "loss.png"
EVAL_PLOT = "eval.png"
TENSORBOARD = "tb"
NOT_PLOTTED = ("step", "samples")  # a record's keys that are positions, not figures


class RunningSums:
    """Named sums and counts accumulated on the device; ``means`` averages over ranks."""

    def __init__(self) -> None:
        self._sums: dict[str, torch.Tensor] = {}
        self._counts: dict[str, torch.Tensor] = {}

    def add(self, name: str, total: torch.Tensor, count: torch.Tensor | float) -> None:
        total = total.detach().float()
        count = torch.as_tensor(count, dtype=torch.float32, device=total.device)
        if name in self._sums:
            self._sums[name] += total
            self._counts[name] += count
        else:
            self._sums[name], self._counts[name] = total.clone(), count.clone()

    def means(self, dist: Dist) -> dict[str, float]:
        """Per-name mean over everything added on every rank since the last call (then reset)."""
        if not self._sums:
            return {}
        names = list(self._sums)
        packed = torch.stack([self._sums[n] for n in names] + [self._counts[n] for n in names])
        packed = dist.all_reduce_mean(packed).tolist()
        self._sums.clear()
        self._counts.clear()
        return {n: packed[i] / packed[len(names) + i] for i, n in enumerate(names) if packed[len(names) + i] > 0}


def quarter_sums(
    losses: torch.Tensor, t: torch.Tensor, num_steps: int, prefix: str = ""
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Loss sums per quarter of the chain (``loss_q0`` near the data … ``loss_q3`` near noise),
    the original's view of where in t a model is still learning."""
    quarter = (4 * t) // num_steps
    out = {}
    for q in range(4):
        mask = quarter == q
        out[f"{prefix}loss_q{q}"] = ((losses * mask).sum(), mask.sum())
    return out


def summary_writer_class():
    """TensorBoard's ``SummaryWriter``; without the package, a one-line error saying how to get it."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UsageError("--log tensorboard needs the tensorboard package",
                         'pip install "adm-diffusion[tensorboard]" (or drop --log tensorboard)') from None
    return SummaryWriter


def check_log_format(log: str) -> None:
    """Refuse ``--log tensorboard`` without the package before anything is written."""
    if log == "tensorboard":
        summary_writer_class()


class MetricsLog:
    """``metrics.jsonl``: appended by rank 0; a resumed run first drops records after its step.

    ``tensorboard``: the records (and images) go to TensorBoard event files in ``RUN/tb`` as
    well; a resumed run's events after its step are purged there too.
    """

    def __init__(self, run_dir: Path, enabled: bool = True, *, tensorboard: bool = False):
        self.path = Path(run_dir) / METRICS
        self.enabled = enabled
        self.tensorboard = tensorboard and enabled
        self._writer = None

    def truncate_after(self, step: int) -> None:
        """Start at ``step``: drop the records after it (a resumed run writes them again)."""
        if self.tensorboard and self._writer is None:
            self._writer = summary_writer_class()(log_dir=str(self.path.parent / TENSORBOARD),
                                                  purge_step=step + 1 if step else None)
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= step]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))

    def append(self, record: Mapping[str, Any], *, evals: Collection[str] = ()) -> None:
        """One record (``step`` and figures); the keys in ``evals`` are the monitors' numbers."""
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(dict(record)) + "\n")
        if self._writer is not None:
            step = int(record["step"])
            for key, value in record.items():
                if key not in NOT_PLOTTED and isinstance(value, (int, float)) and math.isfinite(value):
                    self._writer.add_scalar(f"{'eval' if key in evals else 'train'}/{key}", value, step)
            self._writer.flush()

    def images(self, step: int, images: Mapping[str, Any]) -> None:
        """uint8 ``[H, W, C]`` images (the sample grids) into TensorBoard, by tag."""
        if self._writer is not None and images:
            for tag, image in images.items():
                self._writer.add_image(tag, image, step, dataformats="HWC")
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` (a torn last line from a killed run is ignored)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except ValueError:
            continue
    return records


def plot_curve(
    steps: Sequence[float],
    values: Sequence[float],
    path: str | Path,
    *,
    title: str = "training loss",
    size: tuple[int, int] = (800, 480),
) -> Path:
    """A PNG line plot of ``values`` over ``steps`` (log-scale y when all values are positive)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = size
    left, right, top, bottom = 70, 20, 36, 44
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    draw.text((left, 10), title, fill="black", font=font)
    points = [(float(s), float(v)) for s, v in zip(steps, values, strict=True) if math.isfinite(float(v))]
    x0, y0, x1, y1 = left, top, width - right, height - bottom
    draw.rectangle((x0, y0, x1, y1), outline="black")
    if points:
        log_y = all(v > 0 for _, v in points)
        ys = [math.log10(v) if log_y else v for _, v in points]
        s_min, s_max = min(p[0] for p in points), max(p[0] for p in points)
        v_min, v_max = min(ys), max(ys)
        s_span, v_span = (s_max - s_min) or 1.0, (v_max - v_min) or 1.0

        def xy(step: float, value: float) -> tuple[float, float]:
            return (x0 + (step - s_min) / s_span * (x1 - x0), y1 - (value - v_min) / v_span * (y1 - y0))

        for k in range(5):  # y ticks
            value = v_min + v_span * k / 4
            _, y = xy(s_min, value)
            draw.line((x0 - 4, y, x0, y), fill="black")
            label = f"{10**value:.3g}" if log_y else f"{value:.3g}"
            draw.text((4, y - 6), label, fill="black", font=font)
        for k in range(5):  # x ticks
            step = s_min + s_span * k / 4
            x, _ = xy(step, v_min)
            draw.line((x, y1, x, y1 + 4), fill="black")
            draw.text((x - 12, y1 + 8), f"{step:.0f}", fill="black", font=font)
        draw.text(((x0 + x1) // 2 - 12, height - 18), "step", fill="black", font=font)
        line = [xy(s, v) for (s, _), v in zip(points, ys, strict=True)]
        if len(line) > 1:
            half = len(ys) // 40  # a centred moving average once there are enough points
            draw.line(line, fill=(120, 160, 220) if half else (20, 60, 160), width=1 if half else 2)
            if half:
                smoothed = [
                    sum(ys[max(0, i - half) : i + half + 1]) / len(ys[max(0, i - half) : i + half + 1])
                    for i in range(len(ys))
                ]
                draw.line([xy(s, v) for (s, _), v in zip(points, smoothed, strict=True)], fill=(20, 60, 160), width=2)
        else:
            x, y = line[0]
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(20, 60, 160))
    path = Path(path)
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG")
    return path


def plot_run(run_dir: str | Path, key: str = "loss", *, path: str | Path | None = None,
             title: str | None = None) -> Path | None:
    """``loss.png`` (or ``path``) from a run's metrics: ``key`` over the steps (None when nothing
    was logged yet)."""
    run_dir = Path(run_dir)
    if not (run_dir / METRICS).is_file():
        return None
    records = [r for r in read_metrics(run_dir) if isinstance(r.get(key), (int, float))]
    if not records:
        return None
    return plot_curve([r["step"] for r in records], [r[key] for r in records], path or run_dir / PLOT,
                      title=title or f"training {key}")
