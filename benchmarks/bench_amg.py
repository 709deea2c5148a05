"""Automatic masks for one photo: the reference vs samkit (exact) vs samkit --fast, one run, same weights.

    python benchmarks/bench_amg.py [--variant sam2.1-hiera-tiny] [--size 1200x800] [--points-per-side 32]

Default generator settings (32x32 points, pred_iou_thresh 0.8, stability 0.95, NMS 0.7). Weights:
the perturbed reference model, with its mask logits scaled x100 and its IoU head shifted up, so that
masks are confident and scores straddle the thresholds as a trained model's do (random weights would
let every mask fail the first filter, which flatters both packages). Prints wall times, samkit's
per-stage split, mask counts, how the exact output agrees with the reference's (same masks in the same order, score
and pixel differences at float rounding level), and the fast mode's mask IoU against the exact mode.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import DATA, ROOT, emit_json, median_time, same_allocator

from samkit.cli.bench import mask_iou


def bench_checkpoint(variant: str):
    import oracle

    path = ROOT / ".cache" / "test-checkpoints" / f"{variant}-amgbench2-v{oracle.CHECKPOINT_VERSION}.pt"
    if not path.exists():
        sd = torch.load(oracle.checkpoint(variant), weights_only=True)["model"]
        for i in range(4):
            for p in ("weight", "bias"):
                sd[f"sam_mask_decoder.output_hypernetworks_mlps.{i}.layers.2.{p}"] *= 100.0
        sd["sam_mask_decoder.iou_prediction_head.layers.2.bias"] += 1.5
        torch.save({"model": sd}, path)
    return path


def match_iou(a: list[dict], b: list[dict]) -> float:
    """Mean over masks of `a` of the best IoU with a mask of `b` (1.0 when both are empty)."""
    from samkit import rle

    if not a:
        return 1.0 if not b else 0.0
    bm = [rle.decode(x["segmentation"]) for x in b]
    scores = []
    for x in a:
        m = rle.decode(x["segmentation"])
        scores.append(max((mask_iou(m, y) if m.any() else 0.0 for y in bm), default=0.0))
    return float(np.mean(scores))


def agreement(ref: list[dict], ours: list[dict]) -> dict:
    """How far samkit's exact output is from the reference's: the same masks in the same order, up
    to float rounding (the reference differs from itself this much when points_per_batch changes)."""
    from samkit import rle

    out = {"same_count": len(ref) == len(ours)}
    if not out["same_count"]:
        return out
    out["same_points_and_boxes"] = all(
        r["point_coords"] == o["point_coords"] and r["bbox"] == o["bbox"] for r, o in zip(ref, ours)
    )
    out["max_iou_diff"] = max(
        (abs(r["predicted_iou"] - o["predicted_iou"]) for r, o in zip(ref, ours)), default=0
    )
    out["max_stability_diff"] = max(
        (abs(r["stability_score"] - o["stability_score"]) for r, o in zip(ref, ours)), default=0
    )
    out["max_pixel_diff"] = max(
        (
            int((rle.decode(r["segmentation"]) != rle.decode(o["segmentation"])).sum())
            for r, o in zip(ref, ours)
        ),
        default=0,
    )
    return out


def smooth_masks(n: int, seed: int = 0) -> torch.Tensor:
    """(n, 256, 256) decoder-like logits of blobs (steep at the outline, as a trained model's are; the
    perturbed weights' masks are noise, so they cannot show the filter stage of real images)."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    out = torch.full((n, 256, 256), -20.0)
    for k in range(n):
        for _ in range(3):
            cy, cx = (torch.rand(2, generator=g) * 256).tolist()
            ry, rx = (4 + torch.rand(2, generator=g) * 80).tolist()
            out[k] = torch.maximum(out[k], (1 - ((ys - cy) / ry) ** 2 - ((xs - cx) / rx) ** 2) * 20)
    return out


def scoring(hw: tuple[int, int], n: int = 64, runs: int = 3) -> dict:
    """Stability score + box of n smooth candidates at full size: upsampled (the reference's way,
    a few masks at a time) vs by cells of the low-res grid (samkit's exact mode); ms per mask."""
    import torch.nn.functional as F

    from samkit import amg

    low = smooth_masks(n)

    def upsampled():
        for i in range(0, n, 4):
            full = F.interpolate(low[i : i + 4, None], size=hw, mode="bilinear", align_corners=False)[:, 0]
            amg.stability_score(full, 0.0, 1.0), amg.batched_mask_to_box(full > 0.0)

    def by_cells():
        for i in range(0, n, 16):
            assert amg.upsampled_stability_and_boxes(low[i : i + 16], hw, 0.0, 1.0) is not None

    return {
        name + "_ms_per_mask": round(1e3 * median_time(fn, runs) / n, 3)
        for name, fn in (("upsampled", upsampled), ("by_cells", by_cells))
    }


def fast_vs_exact_masks(model, fast_model, image: np.ndarray, side: int = 16) -> dict:
    """The fast mode's masks against the exact mode's, prompt by prompt: with every filter off both
    return every candidate (3 per grid point), so this isolates the bf16 encoder and decoder. Each
    exact mask is matched to the best of the fast masks of the same point (their order by score can
    differ)."""
    import samkit
    from samkit import rle

    kw = dict(points_per_side=side, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    kw["output_mode"] = "coco_rle"
    exact = samkit.AutomaticMaskGenerator(model, **kw).generate(image)
    fast = samkit.AutomaticMaskGenerator(fast_model, fast=True, **kw).generate(image)
    assert len(exact) == len(fast)
    by_point: dict = {}
    for b in fast:
        by_point.setdefault(tuple(b["point_coords"][0]), []).append(b)
    ious, score_diffs = [], []
    for a in exact:
        ma = rle.decode(a["segmentation"])
        best, diff = 0.0, 1.0
        for b in by_point[tuple(a["point_coords"][0])]:
            iou = mask_iou(ma, rle.decode(b["segmentation"]))
            if iou >= best:
                best, diff = iou, abs(a["predicted_iou"] - b["predicted_iou"])
        ious.append(best)
        score_diffs.append(diff)
    return {
        "candidates": len(ious),
        "mean_iou": float(np.mean(ious)),
        "p5_iou": float(np.percentile(ious, 5)),
        "max_score_diff": float(max(score_diffs)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="sam2.1-hiera-tiny")
    ap.add_argument("--size", default="1200x800", help="the photo is resized to WxH")
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--no-reference", action="store_true")
    args = ap.parse_args()

    from PIL import Image

    import oracle
    import samkit
    from samkit.transforms import load_image

    oracle.setup()
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    w, h = (int(v) for v in args.size.split("x"))
    image = np.asarray(
        Image.fromarray(load_image(DATA / "images" / "truck.jpg")).resize((w, h), Image.Resampling.BILINEAR)
    )
    ckpt = bench_checkpoint(args.variant)
    kw = dict(points_per_side=args.points_per_side, output_mode="coco_rle")
    rows = {}
    outputs = {}
    model = samkit.load_model(args.variant, checkpoint=ckpt, device="cpu")
    fast_model = samkit.load_model(args.variant, checkpoint=ckpt, device="cpu", precision="bf16")
    runs = [
        ("samkit", lambda: samkit.AutomaticMaskGenerator(model, **kw)),
        # the fast path as `samkit auto --fast` runs it: bf16 image encoder, bf16 decoder, low-res filters
        ("samkit-fast", lambda: samkit.AutomaticMaskGenerator(fast_model, fast=True, **kw)),
    ]
    if not args.no_reference:
        ref_model = oracle.build_reference(args.variant, ckpt)
        # the reference as a user runs it (glibc's default malloc) and, like samkit, with freed
        # memory reused (samkit's commands set that for their process; it halves the reference's
        # time too, which was mostly page faults)
        runs.insert(0, ("reference", lambda: SAM2AutomaticMaskGenerator(ref_model, **kw)))
        runs.insert(0, ("reference-default-malloc", lambda: SAM2AutomaticMaskGenerator(ref_model, **kw)))
    for name, make in runs:
        if name != "reference-default-malloc":
            same_allocator()
        gen = make()
        with torch.inference_mode():
            t = time.perf_counter()
            outputs[name] = gen.generate(image)
            seconds = time.perf_counter() - t
        rows[name] = {
            "seconds": seconds,
            "masks": len(outputs[name]),
            "stages": {k: round(v, 3) for k, v in getattr(gen, "timings", {}).items()},
        }
        print(
            f"{name:<12} {seconds:8.2f} s  {len(outputs[name]):4d} masks  {rows[name]['stages'] or ''}",
            flush=True,
        )
    if "reference" in rows:
        rows["samkit"]["agreement_with_reference"] = agree = agreement(
            outputs["reference"], outputs["samkit"]
        )
        for name in ("samkit", "samkit-fast"):
            rows[name]["speedup"] = rows["reference"]["seconds"] / rows[name]["seconds"]
            rows[name]["speedup_vs_default_malloc_reference"] = (
                rows["reference-default-malloc"]["seconds"] / rows[name]["seconds"]
            )
        print(
            f"samkit exact: {rows['samkit']['speedup']:.1f}x the reference with the same allocator, "
            f"{rows['samkit']['speedup_vs_default_malloc_reference']:.1f}x the reference as run by default; "
            f"against the reference: {agree}"
        )
    fast_iou = match_iou(outputs["samkit-fast"], outputs["samkit"])
    exact_iou = match_iou(outputs["samkit"], outputs["samkit-fast"])
    rows["samkit-fast"]["mask_iou_vs_exact"] = {"fast_to_exact": fast_iou, "exact_to_fast": exact_iou}
    print(
        f"fast mode: {rows['samkit-fast'].get('speedup', 0):.1f}x (same allocator); mean best-match mask IoU fast->exact "
        f"{fast_iou:.4f}, exact->fast {exact_iou:.4f}"
    )
    paired = fast_vs_exact_masks(model, fast_model, image)
    print(
        f"fast vs exact, every candidate of a 16x16 grid (no filters): mask IoU mean {paired['mean_iou']:.4f}, "
        f"5th percentile {paired['p5_iou']:.4f}; predicted IoU max diff {paired['max_score_diff']:.4f}"
    )
    score = scoring((h, w))
    print(
        f"scoring smooth (trained-like) candidates at {w}x{h}: upsampled {score['upsampled_ms_per_mask']} ms "
        f"per mask, by cells {score['by_cells_ms_per_mask']} ms per mask"
    )
    emit_json(
        {
            "variant": args.variant,
            "image": [w, h],
            "threads": torch.get_num_threads(),
            "rows": rows,
            "smooth_mask_scoring": score,
            "fast_vs_exact_unfiltered": paired,
        }
    )


if __name__ == "__main__":
    main()
