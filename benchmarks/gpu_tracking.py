"""Tracking frames per second, samkit against the reference, for issue #29 (real-time tracking on a GPU).

    python3 benchmarks/gpu_tracking.py --model sam2.1-hiera-tiny --checkpoint CK --frames DIR \
        [--objects 1 4] [--count 60] [--vos] [--json out.json]

Contenders, on the same perturbed weights and frames:

- ``samkit``: the VideoPredictor as it runs by default (growing memory; objects batched on a GPU);
- ``samkit-static``: the fixed-size memory bank (``static_memory=True``), whose tracking step is
  replayed as a CUDA graph where the policy has ``cuda_graphs`` (a GPU);
- ``samkit-static-fast``: the same with ``precision="bf16"``;
- ``reference``: ``SAM2VideoPredictor`` under bf16 autocast, as Meta's demo runs it;
- ``reference-vos`` (``--vos``): ``SAM2VideoPredictorVOS`` (``vos_optimized=True``: image encoder,
  memory attention, memory encoder and heads ``torch.compile``'d with static shapes), under bf16
  autocast; Meta's 91.2 FPS (tiny, A100) is this one.

Frames are decoded and resized **before** the timed part for every contender (the reference's
``init_state`` does it up front; samkit's frame cache is filled first): the figures are propagation
only. Each contender runs the whole clip once to warm up (compilation, graph recording), then
``--rounds`` timed runs; the warm-up's extra time is reported as its compile/warm-up time. Masks of
the samkit variants are compared with ``samkit``'s (IoU per frame and object; min and mean).
On a CPU (``--device cpu``, ``--image-size 256``) it runs as a dry run of the script itself.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from _common import emit_json


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def clicks(n: int, h: int, w: int) -> list[list[float]]:
    return [[w * (i + 1) / (n + 1), h * 0.55] for i in range(n)]


def run_samkit(pred, frames, objects: int, device) -> tuple[float, dict]:
    """Seconds of propagation over the clip after prompting frame 0, and the masks."""
    h, w = frames[0].shape[:2]
    state = pred.init_state(frames)
    for i in range(len(frames)):  # decoded and resized before the timed part
        state.frames[i]
    with torch.inference_mode():
        for i, p in enumerate(clicks(objects, h, w)):
            pred.add_new_points_or_box(state, 0, i + 1, points=[p], labels=[1])
        gen = pred.propagate_in_video(state)
        masks = {0: next(gen)[2] > 0}
        sync(device)
        t = time.perf_counter()
        for f, _, m in gen:
            masks[f] = m > 0
        sync(device)
    return time.perf_counter() - t, {f: m.cpu() for f, m in masks.items()}


def run_reference(pred, folder: str, objects: int, h: int, w: int, device) -> float:
    with torch.inference_mode(), torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
        state = pred.init_state(folder)  # reads and resizes every frame: not timed
        for i, p in enumerate(clicks(objects, h, w)):
            pred.add_new_points_or_box(state, 0, i + 1, points=np.array([p]), labels=np.array([1]))
        gen = pred.propagate_in_video(state)
        next(gen)
        sync(device)
        t = time.perf_counter()
        for _ in gen:
            pass
        sync(device)
    return time.perf_counter() - t


def iou_stats(a: dict, b: dict) -> dict:
    ious = []
    for f in a:
        for x, y in zip(a[f], b[f]):
            union = (x | y).sum().item()
            ious.append(1.0 if union == 0 else (x & y).sum().item() / union)
    return {"min_iou": round(min(ious), 5), "mean_iou": round(float(np.mean(ious)), 5)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--frames", required=True, help="folder of JPEG frames (00000.jpg, ...)")
    ap.add_argument("--count", type=int, default=60, help="frames of the clip (default 60)")
    ap.add_argument("--objects", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--image-size", type=int, default=None, help="model resolution (default the model's)")
    ap.add_argument("--vos", action="store_true", help="also the reference's vos_optimized predictor")
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    import shutil
    import tempfile

    import samkit
    from samkit.configs import get_config
    from samkit.transforms import load_image

    files = sorted(Path(args.frames).glob("*.jpg"))[: args.count]
    frames = [load_image(f) for f in files]
    h, w = frames[0].shape[:2]
    cfg = get_config(args.model)
    if args.image_size:
        cfg = dataclasses.replace(cfg, image_size=args.image_size)
    info = {
        "model": args.model,
        "device": args.device,
        "gpu": torch.cuda.get_device_name() if torch.device(args.device).type == "cuda" else None,
        "torch": torch.__version__,
        "frames": len(frames),
        "frame_size": [h, w],
        "image_size": cfg.image_size,
        "timed": "propagation only: frames decoded and resized before, for every contender",
    }
    exact = samkit.load_model(cfg, checkpoint=args.checkpoint, device=args.device)
    fast = samkit.load_model(cfg, checkpoint=args.checkpoint, device=args.device, precision="bf16")
    contenders = {
        "samkit": samkit.VideoPredictor(exact, progress=False, frame_cache_size=len(frames)),
        "samkit-static": samkit.VideoPredictor(
            exact, progress=False, frame_cache_size=len(frames), static_memory=True, batch_objects=True
        ),
        "samkit-static-fast": samkit.VideoPredictor(
            fast, progress=False, frame_cache_size=len(frames), static_memory=True, batch_objects=True
        ),
    }
    rows: dict = {}
    for n in args.objects:
        base = None
        for name, pred in contenders.items():
            t0 = time.perf_counter()
            run_samkit(pred, frames, n, args.device)  # warm-up: compilation, graph recording
            warm = time.perf_counter() - t0
            times, masks = [], None
            for _ in range(args.rounds):
                s, masks = run_samkit(pred, frames, n, args.device)
                times.append(s)
            s = statistics.median(times)
            row = {"fps": round((len(frames) - 1) / s, 2), "warmup_extra_s": round(warm - s, 2)}
            if name == "samkit":
                base = masks
            else:
                row.update(iou_stats(masks, base))
            rows.setdefault(name, {})[f"{n}_objects"] = row
            print(name, n, row, flush=True)

    if not args.no_reference and cfg.hf_repo:
        import oracle

        oracle.setup()
        from sam2.build_sam import build_sam2_video_predictor

        folder = tempfile.mkdtemp()
        for i, f in enumerate(files):
            shutil.copy(f, f"{folder}/{i:05d}.jpg")
        overrides = [f"++model.image_size={cfg.image_size}"] if args.image_size else []
        refs = {"reference": {}}
        if args.vos:
            refs["reference-vos"] = {"vos_optimized": True}
        for name, kw in refs.items():
            t0 = time.perf_counter()
            pred = build_sam2_video_predictor(
                oracle.REFERENCE_CONFIGS[args.model],
                args.checkpoint,
                device=args.device,
                hydra_overrides_extra=overrides,
                **kw,
            )
            build = time.perf_counter() - t0
            for n in args.objects:
                t0 = time.perf_counter()
                run_reference(pred, folder, n, h, w, args.device)
                warm = time.perf_counter() - t0
                s = statistics.median(
                    run_reference(pred, folder, n, h, w, args.device) for _ in range(args.rounds)
                )
                row = {"fps": round((len(frames) - 1) / s, 2), "warmup_extra_s": round(warm - s + build, 2)}
                rows.setdefault(name, {})[f"{n}_objects"] = row
                print(name, n, row, flush=True)
    result = {"info": info, "rows": rows}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    emit_json(result)


if __name__ == "__main__":
    main()
