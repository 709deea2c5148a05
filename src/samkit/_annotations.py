"""Reading annotation folders, shared by the training readers (:mod:`samkit.train.data`) and dataset
inference (:mod:`samkit.video.dataset`): frame order, matching masks to frames, label PNGs."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

__all__ = ["frame_key", "label_ids", "natural_key", "read_label_png"]


def natural_key(path: Path) -> tuple:
    """Sort key of a frame file: numeric stems by value (``9`` before ``10``), then the others in
    natural order."""
    stem = path.stem
    if stem.isdigit():
        return (0, int(stem), "")
    return (1, 0, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem)])


def frame_key(stem: str) -> int | str:
    """Frames and their masks are matched by number when the names are numbers (00012 == 0012)."""
    return int(stem) if stem.isdigit() else stem


def read_label_png(path: Path, error: type[Exception] = ValueError) -> np.ndarray:
    """A mask PNG as an (H, W) int32 array of labels: palette index, gray value (8 or 16 bit), or
    1 / 0 for a 1-bit PNG. An RGB PNG is accepted when it is gray (equal channels). Problems raise
    ``error`` with a message naming the file."""
    from PIL import Image

    if not path.is_file():
        raise error(f"mask not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("P", "L", "1", "I", "I;16", "I;16L", "I;16B"):
                arr = np.asarray(im)
            elif mode in ("LA", "PA"):
                arr = np.asarray(im)[..., 0]
            elif mode in ("RGB", "RGBA"):
                rgb = np.asarray(im)[..., :3]
                if not ((rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()):
                    raise error(
                        f"mask {path} is a colour (RGB) image; save instance masks as a palette ('P') or "
                        "grayscale PNG (0 = background, each other value one object)"
                    )
                arr = rgb[..., 0]
            else:
                arr = np.asarray(im.convert("L"))
    except error:
        raise
    except Exception as e:  # PIL raises many types for a broken file
        raise error(f"cannot read mask {path}: {type(e).__name__}: {e}") from None
    return arr.astype(np.int32)


def label_ids(labels: np.ndarray) -> list[int]:
    """The non-zero values present in a label array, ascending."""
    flat = labels.ravel()
    if flat.size == 0:
        return []
    if flat.min() < 0 or flat.max() > 65535:
        values = np.unique(flat)
    else:
        values = np.flatnonzero(np.bincount(flat))
    return [int(v) for v in values if v != 0]
