"""Pictures a person can look at: masks blended over the image, with outlines and the prompts drawn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from . import rle

# Distinct, saturated colours (RGB); mask i takes PALETTE[i % len(PALETTE)].
PALETTE = [
    (30, 144, 255),
    (255, 99, 71),
    (50, 205, 50),
    (255, 215, 0),
    (186, 85, 211),
    (0, 206, 209),
    (255, 140, 0),
    (199, 21, 133),
    (124, 252, 0),
    (70, 130, 180),
    (240, 128, 128),
    (154, 205, 50),
]


def _outline(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a boolean mask (foreground pixels with a background 4-neighbour)."""
    m = mask.astype(bool)
    pad = np.pad(m, 1, constant_values=False)
    interior = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    return m & ~interior


def overlay_masks(
    image: np.ndarray,
    masks: Sequence[np.ndarray] | np.ndarray,
    alpha: float = 0.5,
    points: Sequence[Sequence[float]] | None = None,
    labels: Sequence[int] | None = None,
    boxes: Sequence[Sequence[float]] | None = None,
    colors: Sequence[tuple[int, int, int]] | None = None,
    box_labels: Sequence[str] | None = None,
) -> Image.Image:
    """Blend each (H, W) boolean mask over an HxWx3 uint8 image in its own colour, outline it, and
    mark positive points green, negative points red and boxes in yellow; ``box_labels`` (one per box)
    writes a label at each box's corner, in its mask's colour."""
    out = image.astype(np.float32).copy()
    colors = list(colors) if colors is not None else PALETTE
    for i, mask in enumerate(masks):
        m = np.asarray(mask).astype(bool)
        if m.shape != image.shape[:2]:
            raise ValueError(f"mask {i} has shape {m.shape}, image is {image.shape[:2]}")
        color = np.array(colors[i % len(colors)], dtype=np.float32)
        out[m] = (1 - alpha) * out[m] + alpha * color
        out[_outline(m)] = color
    pil = Image.fromarray(out.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    r = max(4, round(min(image.shape[:2]) / 120))
    for k, box in enumerate(boxes or []):
        x0, y0, x1, y1 = (float(v) for v in box)
        draw.rectangle([x0, y0, x1, y1], outline=(255, 255, 0), width=max(2, r // 2))
        if box_labels is not None and k < len(box_labels):
            c = tuple(int(v) for v in colors[k % len(colors)])
            tx, ty = x0 + 2, max(0.0, y0 - 12)
            bbox = draw.textbbox((tx, ty), str(box_labels[k]))
            draw.rectangle(bbox, fill=(0, 0, 0))
            draw.text((tx, ty), str(box_labels[k]), fill=c)
    for (x, y), lab in zip(points or [], labels or []):
        fill = (0, 220, 0) if int(lab) == 1 else (230, 0, 0)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(255, 255, 255), width=max(1, r // 3))
    return pil


def mask_to_png(mask: np.ndarray) -> Image.Image:
    """A boolean (H, W) mask as an 8-bit PNG image: 255 foreground, 0 background."""
    return Image.fromarray(np.asarray(mask).astype(np.uint8) * 255)


def mask_stats(mask: np.ndarray) -> dict:
    """Area and COCO-style bbox [x, y, width, height] of a boolean mask (zeros when empty)."""
    m = np.asarray(mask)
    if m.dtype != bool:
        m = m.astype(bool)
    area = int(np.count_nonzero(m))  # a popcount: several times quicker than summing bools
    return {"area": area, "bbox": rle.bbox(m)}
