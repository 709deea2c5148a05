"""On a CUDA GPU: does samkit give the reference's masks there, and does each entry point run?

For one variant and one checkpoint (a perturbed official-layout one: see tests/oracle), with the
reference `sam2` loaded on the same weights on the same GPU:

- image: samkit's exact path against SAM2ImagePredictor (both float32) on clicks and a box, by mask
  IoU, score and low-res logit differences; the fast path against the exact one; a batch of two images
  against one by one;
- automatic masks: samkit exact, samkit fast and the reference, mask counts and the match of each
  reference mask to its best samkit mask;
- video: samkit exact against the reference with its bf16 memory cast neutralized (float32 both), and
  samkit fast against the reference under bf16 autocast (as its demo runs), IoU per tracked frame.

Each part runs on its own (a failure prints its traceback and the rest goes on). Prints one summary
line per part and writes everything as JSON (``--json``).

    python tests/gpu/check.py --model sam2.1-hiera-tiny --checkpoint ck.pt \
        --image truck.jpg --frames bedroom/ --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))  # the oracle helpers


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def clicks(h: int, w: int, n: int = 8, seed: int = 0) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return [[float(rng.uniform(0, w)), float(rng.uniform(0, h))] for _ in range(n)]


def check_image(model, fast, ref_model, image: np.ndarray) -> dict:
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    import samkit

    h, w = image.shape[:2]
    from samkit.predictors import _graphs

    ours, quick, ref, eager = (
        samkit.ImagePredictor(model),
        samkit.ImagePredictor(fast),
        SAM2ImagePredictor(ref_model),
        samkit.ImagePredictor(model),
    )
    # clicks replay recorded CUDA graphs from a shape's second use: they must equal eager clicks
    eager._use_cuda_graphs = lambda: False
    graphs = _graphs.graphs_for(model.sam_mask_decoder)
    replays = graphs.replays
    with torch.inference_mode():
        for p in (ours, quick, ref, eager):
            p.set_image(image)
        # numpy prompts: the reference's predict takes arrays, not lists
        prompts = [dict(point_coords=np.array([pt]), point_labels=np.array([1])) for pt in clicks(h, w)]
        prompts.append(dict(box=np.array([w * 0.2, h * 0.2, w * 0.7, h * 0.8]), multimask_output=False))
        ious, score_diffs, logit_diffs, fast_ious, graph_equal = [], [], [], [], []
        for kw in prompts:
            m, s, lo = ours.predict(**kw)
            graph_equal.append(all(np.array_equal(a, b) for a, b in zip((m, s, lo), eager.predict(**kw))))
            rm, rs, rlo = ref.predict(**kw)
            fm, _, _ = quick.predict(**kw)
            ious += [iou(m[i] > 0, rm[i] > 0) for i in range(len(m))]
            score_diffs.append(float(np.abs(s - rs).max()))
            logit_diffs.append(float(np.abs(lo - rlo).max()))
            best = int(np.argmax(s))
            fast_ious.append(iou(m[best] > 0, fm[best] > 0))
        # a batch of two images equals one by one
        other = np.ascontiguousarray(image[::-1])
        ours.set_image_batch([image, other])
        box = np.array([[w * 0.2, h * 0.2, w * 0.7, h * 0.8]])
        batch_masks, _, _ = ours.predict_batch(box_batch=[box, box], multimask_output=False)
        single = []
        for img in (image, other):
            ours.set_image(img)
            single.append(ours.predict(box=box, multimask_output=False)[0])
        batch_iou = min(iou(a > 0, b > 0) for a, b in zip(batch_masks, single))
    return {
        "exact_vs_reference_iou_min": min(ious),
        "exact_vs_reference_iou_mean": float(np.mean(ious)),
        "exact_vs_reference_score_diff_max": max(score_diffs),
        "exact_vs_reference_lowres_logit_diff_max": max(logit_diffs),
        "fast_vs_exact_iou_min": min(fast_ious),
        "fast_vs_exact_iou_mean": float(np.mean(fast_ious)),
        "batch_vs_single_iou_min": batch_iou,
        "prompts": len(prompts),
        "graph_replays": graphs.replays - replays,
        "graph_clicks_equal_eager": all(graph_equal),
    }


def check_auto(model, fast, ref_model, image: np.ndarray, crop_n_layers: int = 0) -> dict:
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    import samkit

    # no quality filters: perturbed weights score every mask low, and the defaults would keep none
    kw = dict(
        points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0, crop_n_layers=crop_n_layers
    )
    out = {}
    ref = SAM2AutomaticMaskGenerator(ref_model, **kw).generate(image)
    out["reference_masks"] = len(ref)
    for name, m, extra in (("exact", model, {}), ("fast", fast, {"fast": True})):
        t = time.perf_counter()
        got = samkit.AutomaticMaskGenerator(m, **kw, **extra).generate(image)
        out[f"{name}_s"] = round(time.perf_counter() - t, 3)
        out[f"{name}_masks"] = len(got)
        best = best_match_ious([r["segmentation"] for r in ref], [g["segmentation"] for g in got])
        out[f"{name}_best_match_iou_min"] = float(best.min()) if len(best) else 1.0
        out[f"{name}_best_match_iou_mean"] = float(best.mean()) if len(best) else 1.0
    return out


def best_match_ious(ref: list[np.ndarray], got: list[np.ndarray], step: int = 2) -> np.ndarray:
    """For each reference mask, its IoU with the most similar of ``got`` (on every ``step``-th pixel:
    all pairs at once, as one matrix product)."""
    if not ref or not got:
        return np.zeros(len(ref))

    def flat(masks):
        return torch.from_numpy(np.stack([m[::step, ::step] for m in masks])).flatten(1).float()

    a, b = flat(ref), flat(got)
    inter = a @ b.T
    union = a.sum(1, keepdim=True) + b.sum(1) - inter
    return (inter / union.clamp(min=1)).max(1).values.numpy()


def _reference_video_masks(pred, folder: str, point, autocast: bool) -> dict[int, np.ndarray]:
    dev = pred.device.type
    ctx = torch.autocast(dev, dtype=torch.bfloat16) if autocast else torch.autocast(dev, enabled=False)
    with torch.inference_mode(), ctx:
        st = pred.init_state(folder)
        pred.add_new_points_or_box(st, 0, 1, points=np.array([point]), labels=np.array([1]))
        return {t: (m[0, 0] > 0).cpu().numpy() for t, _, m in pred.propagate_in_video(st)}


def check_video(model, fast, variant: str, frames_dir: str, n_frames: int) -> dict:
    # (after the last part: neutralizing the reference's memory cast lasts for the process)
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    import oracle
    import samkit

    files = sorted(Path(frames_dir).glob("*.jpg"))[:n_frames]
    h, w = np.asarray(Image.open(files[0])).shape[:2]
    point = [w * 0.45, h * 0.55]
    out = {"frames": len(files)}
    with tempfile.TemporaryDirectory() as folder:
        for f in files:
            Path(folder, f.name).write_bytes(f.read_bytes())
        ref_pred = build_sam2_video_predictor(
            oracle.REFERENCE_CONFIGS[variant], None, device=str(model.device)
        )
        ref_pred.load_state_dict(model.state_dict(), strict=True)
        ref_bf16 = _reference_video_masks(ref_pred, folder, point, autocast=True)
        oracle._neutralize_bf16_memory_cast()  # float32 memories from here on
        ref_fp32 = _reference_video_masks(ref_pred, folder, point, autocast=False)
        for name, m, ref in (("exact", model, ref_fp32), ("fast", fast, ref_bf16)):
            vp = samkit.VideoPredictor(m, progress=False)
            with torch.inference_mode():
                st = vp.init_state(folder)
                vp.add_new_points_or_box(st, 0, 1, points=[point], labels=[1])
                t = time.perf_counter()
                got = {i: (masks[0, 0] > 0).cpu().numpy() for i, _, masks in vp.propagate_in_video(st)}
                out[f"{name}_s_per_frame"] = round((time.perf_counter() - t) / len(got), 4)
            ious = [iou(got[i], ref[i]) for i in sorted(ref)]
            out[f"{name}_vs_reference_iou_min"] = min(ious)
            out[f"{name}_vs_reference_iou_mean"] = float(np.mean(ious))
        fp = [iou(ref_fp32[i], ref_bf16[i]) for i in sorted(ref_fp32)]
        out["reference_fp32_vs_bf16_iou_min"] = min(fp)  # how far autocast alone moves the reference
    return out


def _reference_connected_components() -> None:
    """The reference's hole filling (its video predictor fills holes) calls its CUDA extension, not
    built here: give it the oracle's connected components, as oracle.setup does, but keep the real
    torchvision and, for now, the reference's bf16 memory cast."""
    import types

    import sam2

    import oracle

    if "sam2._C" not in sys.modules:
        mod = types.ModuleType("sam2._C")
        mod.get_connected_componnets = oracle._connected_components  # (sic) the reference's spelling
        sys.modules["sam2._C"] = mod
        sam2._C = mod


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--frames", required=True, help="folder of JPEG frames")
    ap.add_argument("--num-frames", type=int, default=8)
    ap.add_argument("--json", default=None)
    ap.add_argument("--device", default="cuda", help="cuda (default); cpu only checks this script")
    args = ap.parse_args(argv)

    import copy

    from sam2.build_sam import build_sam2

    import oracle
    import samkit
    from samkit.checkpoints import apply_precision
    from samkit.transforms import load_image

    _reference_connected_components()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("tests/gpu/check.py: no CUDA device", file=sys.stderr)
        return 1
    image = load_image(args.image)
    model = samkit.load_model(args.model, checkpoint=args.checkpoint, device=args.device)
    fast = apply_precision(copy.deepcopy(model), "bf16")
    ref_model = build_sam2(oracle.REFERENCE_CONFIGS[args.model], None, device=args.device)
    ref_model.load_state_dict(model.state_dict(), strict=True)
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "none"
    report = {"model": args.model, "device": args.device, "gpu": gpu, "torch": torch.__version__}
    parts = {
        "image": lambda: check_image(model, fast, ref_model, image),
        "auto": lambda: check_auto(model, fast, ref_model, image),
        "auto_crops": lambda: check_auto(model, fast, ref_model, image, crop_n_layers=1),
        "video": lambda: check_video(model, fast, args.model, args.frames, args.num_frames),
    }
    failed = 0
    for name, part in parts.items():
        try:
            report[name] = part()
        except Exception:
            failed += 1
            report[name] = {"error": traceback.format_exc()}
            print(f"[{name}] FAILED\n{report[name]['error']}", flush=True)
        else:
            print(
                f"[{name}] "
                + ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in report[name].items()
                ),
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
