"""Synthetic test videos: a bright square and a disc moving over a textured background."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def synthetic_frames(n: int, h: int = 72, w: int = 96, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    background = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for t in range(n):
        f = background.copy()
        x0 = 5 + (t * 2) % (w - 30)
        f[20:40, x0 : x0 + 20] = (230, 40, 40)
        cx, cy = w - 20 - (t % (w - 40)), h // 2 + 10
        f[(yy - cy) ** 2 + (xx - cx) ** 2 < 64] = (40, 220, 60)
        frames.append(f)
    return frames


def write_mp4(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), mode="w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"g": "8"}  # a keyframe every 8 frames, so seeking is exercised
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def write_folder(path: Path, frames: list[np.ndarray], ext: str = ".jpg") -> Path:
    from PIL import Image

    path.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(path / f"{i:05d}{ext}")
    return path
