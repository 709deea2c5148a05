"""Video tracking with the exported graphs in onnxruntime (OnnxVideoTracker) against samkit's
VideoPredictor, at full size: how close the logits are, and the time per tracked frame (#32).

    python3 benchmarks/bench_onnx_video.py [--model sam2.1-hiera-tiny] [--frames 8] [--threads 2]

Perturbed official-layout weights (no download), the first ``--frames`` frames of the test data's
bedroom clip (a generated clip where the data is absent), one click on frame 0, propagated forward.
Both sides track without hole filling (the ONNX tracker leaves that post-processing out). Times are
whole frames (encoder included), the first frame left out, taking the two in turn.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from _common import DATA, emit_json


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    import oracle
    import samkit
    from samkit.export import OnnxVideoTracker, export_onnx
    from samkit.transforms import load_image
    from videogen import synthetic_frames

    torch.set_num_threads(args.threads)
    model = samkit.load_model(args.model, checkpoint=oracle.checkpoint(args.model), device="cpu")
    folder = tempfile.mkdtemp()
    t = time.perf_counter()
    export_onnx(model, folder)
    export_s = time.perf_counter() - t
    clip = sorted((DATA / "videos" / "bedroom").glob("*.jpg"))[: args.frames]
    frames = [load_image(p) for p in clip] if clip else synthetic_frames(args.frames, 480, 640)
    h, w = frames[0].shape[:2]
    click = [w * 0.5, h * 0.55]

    pred = samkit.VideoPredictor(model, fill_hole_area=0, progress=False)
    state = pred.init_state(frames)
    pred.add_new_points_or_box(state, 0, 1, points=np.array([click]), labels=np.array([1]))
    want, eager_t = {}, []
    t = time.perf_counter()
    for f, _, logits in pred.propagate_in_video(state):
        want[f] = logits[0, 0].numpy()
        eager_t.append(time.perf_counter() - t)
        t = time.perf_counter()

    tracker = OnnxVideoTracker(folder, threads=args.threads)
    got, ort_t = {}, []
    t = time.perf_counter()
    for f, out in tracker.track(frames, {0: {1: {"points": [click], "labels": [1]}}}):
        got[f] = out[1]
        ort_t.append(time.perf_counter() - t)
        t = time.perf_counter()

    rel = max(float(np.abs(got[f] - want[f]).max() / max(1.0, np.abs(want[f]).max())) for f in want)
    agree = min(float(((got[f] > 0) == (want[f] > 0)).mean()) for f in want)
    row = {
        "model": args.model,
        "frames": len(frames),
        "size": [h, w],
        "export_s": round(export_s, 1),
        "max_rel_diff": rel,
        "min_pixel_agreement": agree,
        "samkit_s_per_frame": round(float(np.median(eager_t[1:])), 3),
        "onnxruntime_s_per_frame": round(float(np.median(ort_t[1:])), 3),
        "onnxruntime": ort.__version__,
    }
    print(
        f"{args.model}, {len(frames)} frames {w}x{h}: logits within {rel:.2e} relative, masks agree on at "
        f"least {100 * agree:.4f}% of each frame's pixels; per tracked frame samkit {row['samkit_s_per_frame']:.2f} s, "
        f"onnxruntime {row['onnxruntime_s_per_frame']:.2f} s (export {export_s:.0f} s)"
    )
    emit_json(row)


if __name__ == "__main__":
    main()
