"""Video seconds per tracked frame with and without frame prefetching (VideoPredictor's
``prefetch_frames``), the two taking turns; optionally a profile of one run's top operations.

    python benchmarks/bench_video_prefetch.py --model sam2.1-hiera-tiny --checkpoint ck.pt \
        --device cuda --fast --frames 8 --rounds 3 [--profile]

Frames are generated 1800x1200 pictures (samkit.cli.bench's), one object clicked on the first.
"""

from __future__ import annotations

import argparse
import statistics

import torch

import samkit
from samkit.cli import bench


def seconds_per_frame(model, frames, objects: int, prefetch: bool) -> float:
    h, w = frames[0].shape[:2]
    vp = samkit.VideoPredictor(model, progress=False, prefetch_frames=prefetch)
    st = vp.init_state(frames)
    with torch.inference_mode():
        for i, point in enumerate(bench._video_clicks(objects, h, w)):
            vp.add_new_points_or_box(st, 0, i + 1, points=[point], labels=[1])
        return bench._seconds_per_tracked_frame(vp.propagate_in_video(st))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--device", default=None)
    ap.add_argument("--fast", action="store_true")
    ap.add_argument("--frames", type=int, default=8, help="tracked frames after the prompted one")
    ap.add_argument("--objects", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print the top operations of one run")
    args = ap.parse_args(argv)

    samkit.tune_allocator()
    model = samkit.load_model(
        args.model, checkpoint=args.checkpoint, device=args.device, precision="bf16" if args.fast else "fp32"
    )
    frames = bench._video_frames(1200, 1800, args.frames)
    seconds_per_frame(model, frames[:3], args.objects, True)  # warm-up
    times: dict[bool, list[float]] = {False: [], True: []}
    for r in range(args.rounds):
        for prefetch in (False, True) if r % 2 == 0 else (True, False):
            times[prefetch].append(seconds_per_frame(model, frames, args.objects, prefetch))
    med = {k: statistics.median(v) for k, v in times.items()}
    print(
        f"{args.model} {'fast' if args.fast else 'exact'} on {model.device}, {args.objects} object(s), "
        f"{args.frames} tracked frames, median of {args.rounds}: without prefetch {med[False]:.4f} s/frame, "
        f"with {med[True]:.4f} ({med[False] / med[True]:.2f}x); all: {times}"
    )
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if model.device.type == "cuda" else [])
        with profile(activities=acts) as prof:
            seconds_per_frame(model, frames, args.objects, True)
        key = "self_cuda_time_total" if model.device.type == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=18, max_name_column_width=60))
        print(
            prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18, max_name_column_width=60)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
