"""Memory of a live session over a long stream: RSS and the session's own tensors after 200 frames and
after --frames (20,000 by default), with per-frame time; #33 asks for RSS within 1.2x.

    python benchmarks/bench_stream_memory.py [--frames 20000] [--image-size 256] [--objects 2]

Frames are generated (moving shapes on a 320x240 texture, made per frame: nothing is decoded or
stored), fed to a :class:`samkit.StreamTracker` one at a time; a new object is added at frame 100
and a correction click given at frame 150, as a live user would. The model is sam2.1-hiera-tiny's
architecture with perturbed weights (no download), at --image-size so 20,000 frames take minutes on
a CPU; the state per frame scales with image_size^2, the flatness is what is measured.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
from _common import emit_json


def rss_mb() -> float:
    """Current resident set size (not the peak), in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def frame(t: int, rng_background: np.ndarray) -> np.ndarray:
    f = rng_background.copy()
    h, w = f.shape[:2]
    x = 10 + (3 * t) % (w - 60)
    f[60:110, x : x + 50] = (230, 40, 40)
    cy, cx = 160, w - 40 - (2 * t) % (w - 80)
    yy, xx = np.ogrid[:h, :w]
    f[(yy - cy) ** 2 + (xx - cx) ** 2 < 400] = (40, 220, 60)
    return f


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=20000)
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument(
        "--model",
        default="sam2.1-hiera-tiny",
        choices=("sam2.1-hiera-tiny", "test-tiny"),
        help="test-tiny: the unit tests' miniature config (128 px; same code, 10x faster)",
    )
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import torch

    import oracle
    import samkit
    from samkit.configs import get_config
    from samkit.runtime import tune_allocator

    tune_allocator()
    torch.set_num_threads(args.threads)
    if args.model == "test-tiny":
        import tempfile

        from conftest import random_tiny_state_dict

        ckpt = Path(tempfile.mkdtemp()) / "test_tiny.pt"
        torch.save({"model": random_tiny_state_dict()}, ckpt)
        cfg = get_config("test-tiny")
    else:
        ckpt = oracle.checkpoint("sam2.1-hiera-tiny")
        cfg = dataclasses.replace(get_config("sam2.1-hiera-tiny"), image_size=args.image_size)
    model = samkit.load_model(cfg, checkpoint=ckpt, device="cpu")
    session = samkit.StreamTracker(model)
    background = np.random.default_rng(0).integers(0, 80, (240, 320, 3), dtype=np.uint8)
    prompts = {
        0: {1: {"box": [10, 60, 60, 110]}},
        100: {2: {"points": [[280 - (200 % 240), 160]], "labels": [1]}},
        150: {1: {"points": [[20, 20]], "labels": [0]}},
    }
    marks = sorted({200, 2000, args.frames} & set(range(1, args.frames + 1)))
    rows = []
    start = time.perf_counter()
    window_start, window_frames = start, 0
    for t in range(args.frames):
        masks = session.track(frame(t, background), prompts.get(t))
        window_frames += 1
        if t + 1 in marks:
            now = time.perf_counter()
            rows.append(
                {
                    "frames": t + 1,
                    "rss_mb": round(rss_mb(), 1),
                    "state_mb": round(session.state_nbytes() / 2**20, 3),
                    "frame_outputs_held": session.frames_held(),
                    "s_per_frame_since_last_mark": round((now - window_start) / window_frames, 4),
                    "objects_present": int(sum(m.any() for m in masks.values())),
                }
            )
            print(rows[-1], flush=True)
            window_start, window_frames = now, 0
    first, last = rows[0], rows[-1]
    emit_json(
        {
            "model": f"{args.model} (perturbed weights)",
            "image_size": cfg.image_size,
            "threads": args.threads,
            "objects": len(session.obj_ids),
            "rows": rows,
            "rss_ratio_last_vs_200": round(last["rss_mb"] / first["rss_mb"], 3),
            "seconds": round(time.perf_counter() - start, 1),
        }
    )


if __name__ == "__main__":
    main()
