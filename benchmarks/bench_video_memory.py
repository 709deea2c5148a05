"""Peak memory while tracking 2 objects through long generated videos: samkit's bounded state vs
keeping every frame's outputs (the reference's behaviour, ``--keep-all-outputs``).

    python benchmarks/bench_video_memory.py [--frames 200 2000] [--image-size 256]

Each run is a fresh process (peak RSS is per process). The model is sam2.1-hiera-tiny's architecture
with perturbed weights (no download), run at --image-size to keep a 2,000-frame run to minutes on a
CPU; state per frame scales with image_size^2, so the ratio is what matters. The video is a 320x240
H.264 clip of moving shapes, generated once per length and decoded lazily.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import time

from _common import ROOT, emit_json, peak_rss_mb


def child(args) -> None:
    import torch

    import oracle
    import samkit
    from samkit.configs import get_config

    torch.set_num_threads(2)
    ckpt = oracle.checkpoint("sam2.1-hiera-tiny")
    cfg = dataclasses.replace(get_config("sam2.1-hiera-tiny"), image_size=args.image_size)
    model = samkit.load_model(cfg, checkpoint=ckpt, device="cpu")
    pred = samkit.VideoPredictor(model, keep_all_outputs=args.keep_all, progress=False)
    state = pred.init_state(args.video)
    pred.add_new_points_or_box(state, 0, 1, points=[[60, 100]], labels=[1])
    pred.add_new_points_or_box(state, 0, 2, box=[200, 130, 260, 190])
    base = peak_rss_mb()
    t = time.perf_counter()
    n = 0
    for _f, _ids, masks in pred.propagate_in_video(state):
        n += 1
        (masks > 0).cpu()  # what a consumer does with them
    dt = time.perf_counter() - t
    emit_json(
        {
            "frames": n,
            "keep_all": args.keep_all,
            "peak_rss_mb": peak_rss_mb(),
            "rss_before_tracking_mb": base,
            "state_mb": state.state_nbytes() / 2**20,
            "s_per_frame": dt / n,
        }
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, nargs="+", default=[200, 2000])
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument("--no-keep-all", action="store_true", help="skip the keep-everything comparison runs")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--video", help=argparse.SUPPRESS)
    ap.add_argument("--keep-all", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(args)

    from videogen import synthetic_frames, write_mp4

    cache = ROOT / ".cache" / "bench-videos"
    cache.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.frames:
        video = cache / f"shapes_{n}.mp4"
        if not video.exists():
            frames = synthetic_frames(64, h=240, w=320)
            write_mp4(video, [frames[i % 64] for i in range(n)], fps=30)
        for keep_all in [False] if args.no_keep_all else [False, True]:
            cmd = [
                sys.executable,
                __file__,
                "--child",
                "--video",
                str(video),
                "--image-size",
                str(args.image_size),
            ]
            if keep_all:
                cmd.append("--keep-all")
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            row = json.loads(next(line[5:] for line in out.splitlines() if line.startswith("JSON ")))
            rows.append(row)
            print(
                f"{n:>6} frames  {'keep-all' if keep_all else 'samkit  '}  peak RSS {row['peak_rss_mb']:8.0f} MiB  "
                f"state {row['state_mb']:8.1f} MiB  {row['s_per_frame']:.3f} s/frame",
                flush=True,
            )
    bounded = {r["frames"]: r["peak_rss_mb"] for r in rows if not r["keep_all"]}
    if len(bounded) >= 2:
        lo, hi = min(bounded), max(bounded)
        print(f"samkit peak RSS ratio {hi} vs {lo} frames: {bounded[hi] / bounded[lo]:.2f}x")
    emit_json({"image_size": args.image_size, "rows": rows})


if __name__ == "__main__":
    main()
