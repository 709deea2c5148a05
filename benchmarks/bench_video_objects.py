"""Seconds per tracked frame for 1, 4 and 8 objects: the reference (one object at a time), samkit's
exact path (objects batched, and one at a time) and its fast path (``precision="bf16"``: bf16 image
encoder, memory attention under bf16 autocast where bf16 is fast), same weights, same frames; with
the fast path's mask IoU against the exact path over every tracked frame and object.

    python benchmarks/bench_video_objects.py [--objects 1 4 8] [--frames 8] [--image-size 1024]

Frames come from ../shared/data/videos/bedroom; objects are clicked on frame 0 and tracked through
the next --frames frames. Needs the oracle (bash scripts/test.sh installs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from _common import DATA, emit_json, same_allocator


def clicks(n: int, h: int, w: int) -> list[list[float]]:
    rng = np.random.default_rng(0)
    return [[float(x), float(y)] for x, y in zip(rng.uniform(0.1, 0.9, n) * w, rng.uniform(0.1, 0.9, n) * h)]


def time_tracking(pred, state, points, frames: int, masks: list | None = None) -> float:
    """Seconds per tracked frame; the binary masks (objects, H, W) of each frame go to ``masks``."""
    with torch.inference_mode():
        for i, p in enumerate(points):
            pred.add_new_points_or_box(state, 0, i + 1, points=[p], labels=[1])
        t = None
        n = 0
        for f, _, m in pred.propagate_in_video(state, max_frame_num_to_track=frames):
            if masks is not None:
                masks.append((m[:, 0] > 0).numpy())
            if f == 0:  # prompted frame: no tracking work; start the clock after it
                t = time.perf_counter()
                continue
            n += 1
        return (time.perf_counter() - t) / n


def iou(a: list, b: list) -> float:
    """IoU of two runs' masks, pooled over every frame and object."""
    inter = sum(int((x & y).sum()) for x, y in zip(a, b))
    union = sum(int((x | y).sum()) for x, y in zip(a, b))
    return inter / union if union else 1.0


def main() -> None:
    same_allocator()  # both contenders reuse freed memory, as `samkit` commands do
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="sam2.1-hiera-tiny")
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--image-size", type=int, default=1024)
    args = ap.parse_args()

    import oracle
    import samkit
    from samkit.configs import get_config
    from samkit.video.io import FrameFolder

    oracle.setup()
    from sam2.build_sam import build_sam2_video_predictor

    src = FrameFolder(DATA / "videos" / "bedroom")
    frames = [src.frame(i) for i in range(args.frames + 1)]
    h, w = frames[0].shape[:2]
    ckpt = oracle.checkpoint(args.variant)
    ref = build_sam2_video_predictor(
        oracle.REFERENCE_CONFIGS[args.variant],
        str(ckpt),
        device="cpu",
        hydra_overrides_extra=[f"++model.image_size={args.image_size}"],
    )
    model = samkit.load_model(
        dataclasses.replace(get_config(args.variant), image_size=args.image_size),
        checkpoint=ckpt,
        device="cpu",
    )
    fast_model = samkit.load_model(
        dataclasses.replace(get_config(args.variant), image_size=args.image_size),
        checkpoint=ckpt,
        device="cpu",
        precision="bf16",
    )
    rows = []
    print(
        f"{args.variant} at {args.image_size}px, {args.frames} tracked frames of bedroom ({w}x{h}), "
        f"{torch.get_num_threads()} threads; seconds per frame"
    )
    print(
        f"{'objects':>8}{'reference':>12}{'batched':>10}{'unbatched':>11}{'speed-up':>10}"
        f"{'fast':>8}{'speed-up':>10}{'fast IoU':>10}"
    )
    for n in args.objects:
        pts = clicks(n, h, w)
        r = time_tracking(ref, oracle.reference_video_state(ref, frames), pts, args.frames)
        batched = samkit.VideoPredictor(model, progress=False, batch_objects=True)
        s = time_tracking(batched, batched.init_state(frames), pts, args.frames)
        single = samkit.VideoPredictor(model, progress=False, batch_objects=False)
        exact_masks: list = []
        u = time_tracking(single, single.init_state(frames), pts, args.frames, exact_masks)
        fast = samkit.VideoPredictor(fast_model, progress=False)  # its default object batching
        fast_masks: list = []
        f = time_tracking(fast, fast.init_state(frames), pts, args.frames, fast_masks)
        agree = iou(fast_masks, exact_masks)
        rows.append(
            {
                "objects": n,
                "reference_s": r,
                "samkit_batched_s": s,
                "samkit_unbatched_s": u,
                "speedup": r / min(s, u),
                "samkit_fast_s": f,
                "fast_speedup": r / f,
                "fast_iou_vs_exact": agree,
            }
        )
        print(
            f"{n:>8}{r:>12.2f}{s:>10.2f}{u:>11.2f}{r / min(s, u):>9.2f}x{f:>8.2f}{r / f:>9.2f}x{agree:>10.4f}",
            flush=True,
        )
    emit_json({"variant": args.variant, "image_size": args.image_size, "frames": args.frames, "rows": rows})


if __name__ == "__main__":
    main()
