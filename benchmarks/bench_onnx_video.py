"""Video tracking with the exported graphs in onnxruntime (OnnxVideoTracker) against samkit's
VideoPredictor, at full size: how close the logits are, and the time per tracked frame (#32).

    python3 benchmarks/bench_onnx_video.py [--model sam2.1-hiera-tiny] [--frames 8] [--threads 2]

Perturbed official-layout weights (no download), the first ``--frames`` frames of the test data's
bedroom clip (a generated clip where the data is absent), one click on frame 0, propagated forward.
Both sides track without hole filling (the ONNX tracker leaves that post-processing out). Times are
whole frames (encoder included), the first frame left out, taking the two in turn.
"""

from __future__ import annotations

import time

import numpy as np
from _common import DATA, emit_json, exported, onnx_args


def main() -> None:
    args = onnx_args(__doc__, frames=8)

    import onnxruntime as ort

    import samkit
    from samkit.export import OnnxVideoTracker
    from samkit.transforms import load_image
    from videogen import synthetic_frames

    model, folder, export_s = exported(args.model, args.threads)
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
