"""What benchmarks share for reporting: marked blocks in docs, and a PNG line chart drawn with PIL
(a dependency already), so benchmarks need no matplotlib."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f"]


def _axis(values: Sequence[float], log: bool) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if log:
        lo, hi = math.log10(lo), math.log10(hi)
    pad = (hi - lo) * 0.05 or 1.0
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, log: bool) -> list[float]:
    if log:
        return [10**e * m for e in range(math.floor(lo), math.ceil(hi) + 1) for m in (1, 2, 5)
                if lo <= math.log10(10**e * m) <= hi]
    step = 10 ** math.floor(math.log10((hi - lo) / 4 or 1))
    for mult in (1, 2, 5, 10):
        if (hi - lo) / (step * mult) <= 6:
            step *= mult
            break
    start = math.ceil(lo / step) * step
    return [start + i * step for i in range(int((hi - start) / step) + 1)]


def line_chart(
    series: Mapping[str, Sequence[tuple[float, float]]],
    path: str | Path,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    log_x: bool = False,
    log_y: bool = False,
    size: tuple[int, int] = (900, 560),
) -> Path:
    """Draw one line per series (points sorted by x) with a legend; returns ``path``."""
    from PIL import Image, ImageDraw

    width, height = size
    left, right, top, bottom = 80, 190, 40, 60
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    xs = [x for points in series.values() for x, _ in points]
    ys = [y for points in series.values() for _, y in points]
    x0, x1 = _axis(xs, log_x)
    y0, y1 = _axis(ys, log_y)

    def to_px(x: float, y: float) -> tuple[float, float]:
        fx = ((math.log10(x) if log_x else x) - x0) / (x1 - x0)
        fy = ((math.log10(y) if log_y else y) - y0) / (y1 - y0)
        return left + fx * (width - left - right), height - bottom - fy * (height - top - bottom)

    draw.rectangle([left, top, width - right, height - bottom], outline="black")
    for tick in _ticks(x0, x1, log_x):
        px, _ = to_px(tick, 10**y0 if log_y else y0)
        draw.line([px, height - bottom, px, height - bottom + 5], fill="black")
        draw.text((px - 10, height - bottom + 8), f"{tick:g}", fill="black")
    for tick in _ticks(y0, y1, log_y):
        _, py = to_px(10**x0 if log_x else x0, tick)
        draw.line([left - 5, py, left, py], fill="black")
        draw.line([left, py, width - right, py], fill="#eeeeee")
        draw.text((left - 60, py - 6), f"{tick:g}", fill="black")
    draw.text((width // 2 - 120, 12), title, fill="black")
    draw.text((width // 2 - 80, height - 25), xlabel, fill="black")
    draw.text((8, top - 25), ylabel, fill="black")
    for k, (name, points) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        pixels = [to_px(x, y) for x, y in sorted(points)]
        if len(pixels) > 1:
            draw.line(pixels, fill=colour, width=2)
        for px, py in pixels:
            draw.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        ly = top + 10 + 18 * k
        draw.line([width - right + 10, ly + 6, width - right + 35, ly + 6], fill=colour, width=3)
        draw.text((width - right + 40, ly), name, fill="black")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def replace_block(doc: str | Path, start: str, end: str, text: str) -> None:
    """Put ``text`` between the ``start`` / ``end`` markers of ``doc`` (appended if they are absent)."""
    doc = Path(doc)
    body = doc.read_text()
    block = f"{start}\n{text}\n{end}"
    if start in body:
        body = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, body, flags=re.S)
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    doc.write_text(body)
