"""Make examples/shapes.jpg: the small picture the README's first command segments.

A 640x480 photo-like scene with a fixed seed: a textured background (a soft lighting gradient,
low-frequency blotches and fine grain) and three objects, so that a click on any of them selects
something meaningful: a red disc with a highlight, a blue rectangle with stripes and a green
triangle. Prints the shapes' centres, which make good ``--point X,Y`` clicks.

    python3 examples/make_example_image.py [--out examples/shapes.jpg]

Needs only numpy and Pillow.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

WIDTH, HEIGHT = 640, 480
SEED = 2024

# (centre x, centre y, radius)
DISC = (190, 190, 95)
# (x0, y0, x1, y1), inclusive-exclusive
RECTANGLE = (350, 90, 570, 250)
# three corners (x, y)
TRIANGLE = ((420, 440), (600, 440), (510, 290))


def smooth_noise(rng: np.random.Generator, cells: tuple[int, int]) -> np.ndarray:
    """Low-frequency noise in [0, 1]: a coarse random grid resized up bicubically."""
    coarse = rng.random((cells[1], cells[0])).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((WIDTH, HEIGHT), Image.Resampling.BICUBIC)
    return np.clip(np.asarray(img), 0.0, 1.0)


def background(rng: np.random.Generator) -> np.ndarray:
    """A warm grey, lit from the top left, with blotches and grain."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    light = 1.0 - 0.35 * (xx / WIDTH + yy / HEIGHT) / 2.0
    blotches = smooth_noise(rng, (8, 6)) - 0.5
    base = np.array([178.0, 168.0, 150.0], dtype=np.float32)
    img = base * light[..., None] + 40.0 * blotches[..., None]
    img += rng.normal(0.0, 3.0, (HEIGHT, WIDTH, 1)).astype(np.float32)
    return img


def shape_masks() -> dict[str, np.ndarray]:
    """Boolean masks of the three objects."""
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    cx, cy, r = DISC
    disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2
    x0, y0, x1, y1 = RECTANGLE
    rect = (xx >= x0) & (xx < x1) & (yy >= y0) & (yy < y1)
    (ax, ay), (bx, by), (qx, qy) = TRIANGLE

    def side(px, py, ex, ey):  # which side of the edge (px, py) -> (ex, ey) a pixel lies on
        return (ex - px) * (yy - py) - (ey - py) * (xx - px)

    s1, s2, s3 = side(ax, ay, bx, by), side(bx, by, qx, qy), side(qx, qy, ax, ay)
    tri = ((s1 >= 0) & (s2 >= 0) & (s3 >= 0)) | ((s1 <= 0) & (s2 <= 0) & (s3 <= 0))
    return {"disc": disc, "rectangle": rect, "triangle": tri}


def centres() -> dict[str, tuple[int, int]]:
    """A point inside each object: the disc's and rectangle's centres, the triangle's centroid."""
    x0, y0, x1, y1 = RECTANGLE
    return {
        "disc": (DISC[0], DISC[1]),
        "rectangle": ((x0 + x1) // 2, (y0 + y1) // 2),
        "triangle": (
            round(sum(p[0] for p in TRIANGLE) / 3),
            round(sum(p[1] for p in TRIANGLE) / 3),
        ),
    }


def make_image() -> Image.Image:
    rng = np.random.default_rng(SEED)
    img = background(rng)
    masks = shape_masks()
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)

    # a red disc, shaded as a ball lit from the top left
    cx, cy, r = DISC
    d = np.sqrt((xx - (cx - 0.35 * r)) ** 2 + (yy - (cy - 0.35 * r)) ** 2) / (1.6 * r)
    shade = np.clip(1.15 - d, 0.45, 1.0)
    disc = np.array([205.0, 45.0, 40.0]) * shade[..., None]
    img[masks["disc"]] = disc[masks["disc"]]

    # a blue rectangle with diagonal stripes
    stripes = ((xx + yy) // 14) % 2
    rect = np.where(stripes[..., None] == 0, [40.0, 70.0, 170.0], [70.0, 110.0, 210.0])
    img[masks["rectangle"]] = rect[masks["rectangle"]]

    # a solid green triangle with a little grain
    grain = rng.normal(0.0, 4.0, (HEIGHT, WIDTH, 1))
    tri = np.array([50.0, 150.0, 70.0]) + grain
    img[masks["triangle"]] = tri[masks["triangle"]]

    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), mode="RGB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "shapes.jpg"))
    args = ap.parse_args()
    make_image().save(args.out, format="JPEG", quality=85, optimize=True)
    out = os.path.relpath(args.out)
    print(f"wrote {out} ({WIDTH}x{HEIGHT})")
    for name, (x, y) in centres().items():
        print(f"{name:<10} centre {x},{y}   samkit segment {out} --point {x},{y} --out mask.png")


if __name__ == "__main__":
    main()
