"""A line chart as a PNG, drawn with Pillow (no plotting library needed): mIoU against clicks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .._files import atomic_write

COLORS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]


def line_chart(
    series: Mapping[str, Sequence[float]],
    path: str | os.PathLike,
    *,
    title: str = "",
    xlabel: str = "clicks",
    ylabel: str = "mIoU",
    size: tuple[int, int] = (720, 440),
) -> Path:
    """Draw each series (y at x = 1, 2, ...) as a line with dots, a legend, and axes from the data's
    range; write it atomically as a PNG."""
    from PIL import Image, ImageDraw, ImageFont

    if not series or not any(len(v) for v in series.values()):
        raise ValueError("nothing to plot")
    w, h = size
    left, right, top, bottom = 64, 20, 40 if title else 20, 48
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    n = max(len(v) for v in series.values())
    values = [y for v in series.values() for y in v]
    lo, hi = min(values), max(values)
    lo = max(0.0, min(lo, hi - 0.05) - 0.02)
    hi = min(1.0, hi + 0.02) if hi <= 1.0 else hi
    if hi <= lo:
        hi = lo + 0.1

    def px(x: float, y: float) -> tuple[float, float]:
        fx = (x - 1) / max(n - 1, 1)
        return left + fx * (w - left - right), h - bottom - (y - lo) / (hi - lo) * (h - top - bottom)

    # axes, grid and ticks
    for k in range(6):
        y = lo + (hi - lo) * k / 5
        _, yy = px(1, y)
        draw.line([(left, yy), (w - right, yy)], fill=(230, 230, 230))
        draw.text((left - 8, yy), f"{y:.2f}", fill="black", font=font, anchor="rm")
    step = max(1, round(n / 10))
    for x in range(1, n + 1, step):
        xx, _ = px(x, lo)
        draw.line([(xx, h - bottom), (xx, h - bottom + 4)], fill="black")
        draw.text((xx, h - bottom + 6), str(x), fill="black", font=font, anchor="mt")
    draw.line([(left, top), (left, h - bottom), (w - right, h - bottom)], fill="black")
    draw.text(((left + w - right) / 2, h - 14), xlabel, fill="black", font=font, anchor="mm")
    draw.text((8, top - 14 if title else 6), ylabel, fill="black", font=font)
    if title:
        draw.text((w / 2, 12), title, fill="black", font=font, anchor="mt")
    # lines and legend
    for i, (label, ys) in enumerate(series.items()):
        color = COLORS[i % len(COLORS)]
        pts = [px(x, y) for x, y in enumerate(ys, start=1)]
        if len(pts) > 1:
            draw.line(pts, fill=color, width=2)
        for x, y in pts:
            draw.ellipse([x - 2.5, y - 2.5, x + 2.5, y + 2.5], fill=color)
        ly = h - bottom - 16 - 14 * (len(series) - 1 - i)
        draw.line([(w - right - 190, ly), (w - right - 170, ly)], fill=color, width=3)
        draw.text((w - right - 165, ly), str(label)[:30], fill="black", font=font, anchor="lm")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
