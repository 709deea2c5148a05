"""`samkit bench`: latency and throughput of samkit on this machine, side by side with the reference
`sam2` package when it is installed, on the same weights, in one run.

Measures image encoding (batch 1, and batched throughput), click latency (``predict`` to a
full-resolution numpy mask, one point and eight points), automatic masks for one image, and video
tracking seconds per frame for 1 and 4 objects, for the exact path and the fast path (bfloat16 image
encoder; where bf16 is fast, a bfloat16 mask decoder and memory attention under bf16 autocast), with
the fast path's mask agreement with the exact path on the same image. Each figure is the median of
``runs`` after a warm-up (video: the mean over the tracked frames).

The reference's video predictor stores its memory in bfloat16 and runs only under autocast (as its own
demo does on a GPU): its video figures are taken under bf16 autocast, on the CPU too, and compare with
samkit's fast path.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from .modeling import SAM2Model

VIDEO_FRAMES = 4  # tracked frames after the prompted one
VIDEO_OBJECTS = (1, 4)


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(max(1, runs)):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


@dataclass
class BenchResult:
    rows: dict[str, dict[str, float]] = field(default_factory=dict)  # path name -> metric -> value
    info: dict = field(default_factory=dict)

    def table(self) -> str:
        metrics = [
            ("encode_s", "encode (s)"),
            ("encode_batch_img_s", "batched (img/s)"),
            ("click_ms", "click (ms)"),
            ("click8_ms", "8 points (ms)"),
            ("auto_s", "auto (s)"),
            ("video1_s", "video 1 obj (s/f)"),
            ("video4_s", "video 4 obj (s/f)"),
        ]
        present = [(k, label) for k, label in metrics if any(k in r for r in self.rows.values())]
        head = f"{'':<14}" + "".join(f"{label:>19}" for _, label in present)
        lines = [head]
        for name, r in self.rows.items():
            lines.append(
                f"{name:<14}" + "".join(f"{r[k]:>19.3f}" if k in r else f"{'-':>19}" for k, _ in present)
            )
        for name, label in (("samkit", "speed-up"), ("samkit-fast", "fast speed-up")):
            if "reference" not in self.rows or name not in self.rows:
                continue
            ref, ours = self.rows["reference"], self.rows[name]
            ratios = []
            # the reference tracks under bf16 autocast (see the module docstring): compare the fast path
            autocast_ref = self.info.get("reference_video_autocast", False) and name == "samkit"
            for k, _ in present:
                if autocast_ref and k.startswith("video"):
                    ratios.append(f"{'-':>19}")
                elif k in ref and k in ours and ours[k] > 0 and ref[k] > 0:
                    better_high = k.endswith("img_s")
                    ratios.append(f"{(ours[k] / ref[k] if better_high else ref[k] / ours[k]):>18.2f}x")
                else:
                    ratios.append(f"{'-':>19}")
            lines.append(f"{label:<14}" + "".join(ratios))
        return "\n".join(lines)


def _test_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like test image: smooth gradients and a few shapes (no file needed)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack(
        [xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), (xx + yy) * 127 // max(h + w, 1)], -1
    )
    for _ in range(6):
        cy, cx, r = rng.integers(0, h), rng.integers(0, w), rng.integers(min(h, w) // 12, min(h, w) // 4)
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 255, 3)
    return img.astype(np.uint8)


def mask_iou(m: np.ndarray, y: np.ndarray) -> float:
    """IoU of two boolean masks; 1.0 when both are empty."""
    union = np.logical_or(m, y).sum()
    return float(np.logical_and(m, y).sum() / union) if union else 1.0


def click_agreement(exact, fast, image: np.ndarray, clicks: int = 9, seed: int = 0) -> dict[str, float]:
    """How far the fast path's clicks are from the exact path's on one image: for ``clicks`` random
    single clicks, the IoU of the fast predictor's mask against the exact one's (the mask the exact
    path scores best), and the largest difference of the three scores. ``exact``, ``fast``:
    ImagePredictors; both are given ``image``."""
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    exact.set_image(image)
    fast.set_image(image)
    ious, diffs = [], []
    for _ in range(clicks):
        kw = dict(point_coords=[[rng.uniform(0, w), rng.uniform(0, h)]], point_labels=[1])
        a, sa, _ = exact.predict(**kw)
        b, sb, _ = fast.predict(**kw)
        i = int(np.argmax(sa))
        ious.append(mask_iou(a[i] > 0, b[i] > 0))
        diffs.append(float(np.abs(sa - sb).max()))
    return {"min_iou": min(ious), "mean_iou": float(np.mean(ious)), "max_score_diff": max(diffs)}


def bench_samkit(
    model: SAM2Model,
    image: np.ndarray,
    runs: int = 3,
    batch: int = 4,
    auto: bool = True,
    video_frames: int = VIDEO_FRAMES,
    video_objects: tuple[int, ...] = VIDEO_OBJECTS,
) -> dict[str, float]:
    from .predictors import AutomaticMaskGenerator, ImagePredictor, VideoPredictor

    h, w = image.shape[:2]
    p = ImagePredictor(model)
    out: dict[str, float] = {}
    with torch.inference_mode():
        out["encode_s"] = median_seconds(lambda: p.set_image(image), runs)
        out["encode_batch_img_s"] = batch / median_seconds(lambda: p.set_image_batch([image] * batch), runs)
        p.set_image(image)
        click = dict(point_coords=[[w * 0.45, h * 0.5]], point_labels=[1])
        eight = dict(
            point_coords=[[w * (0.1 + 0.1 * i), h * 0.5] for i in range(8)],
            point_labels=[1, 0] * 4,
            multimask_output=False,
        )
        out["click_ms"] = 1e3 * median_seconds(lambda: p.predict(**click), runs)
        out["click8_ms"] = 1e3 * median_seconds(lambda: p.predict(**eight), runs)
    if auto:
        gen = AutomaticMaskGenerator(model, points_per_side=16, fast=model.precision == "bf16")
        out["auto_s"] = median_seconds(lambda: gen.generate(image), 1)
    frames = _video_frames(h, w, video_frames)
    for n in video_objects:
        vp = VideoPredictor(model, progress=False)
        st = vp.init_state(frames)
        with torch.inference_mode():
            for i, point in enumerate(_video_clicks(n, h, w)):
                vp.add_new_points_or_box(st, 0, i + 1, points=[point], labels=[1])
            out[f"video{n}_s"] = _seconds_per_tracked_frame(vp.propagate_in_video(st))
    return out


def _video_clicks(n: int, h: int, w: int) -> list[list[float]]:
    return [[w * (i + 1) / (n + 1), h * 0.5] for i in range(n)]


def _seconds_per_tracked_frame(frames) -> float:
    """Mean seconds per frame of a propagate_in_video generator, after the prompted frame."""
    next(frames)  # the prompted frame: no tracking work
    t = time.perf_counter()
    k = sum(1 for _ in frames)
    return (time.perf_counter() - t) / max(k, 1)


def _video_frames(h: int, w: int, tracked: int) -> list[np.ndarray]:
    return [_test_image(h, w, seed=i) for i in range(tracked + 1)]


def _reference_video(pred, frames: list[np.ndarray], objects: tuple[int, ...]) -> dict[str, float]:
    """The reference's video predictor ``pred`` on the frames (written as JPEGs, its input), under bf16
    autocast: it stores its memory in bfloat16 and cannot run without autocast."""
    import tempfile

    from PIL import Image

    h, w = frames[0].shape[:2]
    dev = next(pred.parameters()).device
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        for i, f in enumerate(frames):
            Image.fromarray(f).save(f"{folder}/{i:05d}.jpg", quality=95)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
            for n in objects:
                st = pred.init_state(folder)
                for i, point in enumerate(_video_clicks(n, h, w)):
                    pred.add_new_points_or_box(st, 0, i + 1, points=np.array([point]), labels=np.array([1]))
                out[f"video{n}_s"] = _seconds_per_tracked_frame(pred.propagate_in_video(st))
    return out


def run(
    model: SAM2Model,
    image: np.ndarray | None = None,
    runs: int = 3,
    reference: bool = True,
    auto: bool = True,
) -> BenchResult:
    """Benchmark samkit (and the reference, if importable and the model is an official variant)."""
    image = image if image is not None else _test_image(1200, 1800)
    res = BenchResult(
        info={
            "model": model.cfg.name,
            "device": str(model.device),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "image": list(image.shape[:2]),
        }
    )
    res.rows["samkit"] = bench_samkit(model, image, runs, auto=auto)
    if model.precision == "fp32":
        import copy

        from .checkpoints import apply_precision
        from .predictors import ImagePredictor

        fast = apply_precision(copy.deepcopy(model), "bf16")
        res.rows["samkit-fast"] = bench_samkit(fast, image, runs, auto=auto)

        with torch.inference_mode():
            res.info["fast_vs_exact"] = click_agreement(ImagePredictor(model), ImagePredictor(fast), image)
        del fast
    if reference:
        ref = _reference_rows(model, image, runs, auto)
        if ref is not None:
            res.rows["reference"] = ref
            try:
                ref.update(_reference_video_rows(model, image))
                res.info["reference_video_autocast"] = True
                res.info["reference_video"] = (
                    "reference video under bf16 autocast (its video predictor needs it): compare samkit-fast"
                )
            except Exception as e:  # its video path needs more than its image path; keep the rest
                res.info["reference_video"] = f"reference video not measured: {type(e).__name__}: {e}"
        else:
            res.info["reference"] = (
                "not measured: sam2 (with torchvision) is not importable or the model has no official config"
            )
    return res


def _reference_rows(model: SAM2Model, image, runs: int, auto: bool) -> dict | None:
    try:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor
    except Exception:
        return None
    if not model.cfg.hf_repo:
        return None
    ref_model = build_sam2(_reference_config(model), None, device=str(model.device))
    ref_model.load_state_dict(model.state_dict(), strict=True)  # the very same weights
    h, w = image.shape[:2]
    p = SAM2ImagePredictor(ref_model)
    out: dict[str, float] = {}
    with torch.inference_mode():
        out["encode_s"] = median_seconds(lambda: p.set_image(image), runs)
        out["encode_batch_img_s"] = 4 / median_seconds(lambda: p.set_image_batch([image] * 4), runs)
        p.set_image(image)
        out["click_ms"] = 1e3 * median_seconds(
            lambda: p.predict(point_coords=np.array([[w * 0.45, h * 0.5]]), point_labels=np.array([1])), runs
        )
        out["click8_ms"] = 1e3 * median_seconds(
            lambda: p.predict(
                point_coords=np.array([[w * (0.1 + 0.1 * i), h * 0.5] for i in range(8)]),
                point_labels=np.array([1, 0] * 4),
                multimask_output=False,
            ),
            runs,
        )
    if auto:
        gen = SAM2AutomaticMaskGenerator(ref_model, points_per_side=16)
        out["auto_s"] = median_seconds(lambda: gen.generate(image), 1)
    return out


def _reference_config(model: SAM2Model) -> str:
    family, size = model.cfg.name.split("-hiera-")
    short = {"tiny": "t", "small": "s", "base-plus": "b+", "large": "l"}[size]
    return f"configs/{family}/{family}_hiera_{short}.yaml"


def _reference_video_rows(model: SAM2Model, image: np.ndarray) -> dict[str, float]:
    """Video seconds per frame of the reference (bf16 autocast) on the frames samkit tracks."""
    from sam2.build_sam import build_sam2_video_predictor

    pred = build_sam2_video_predictor(_reference_config(model), None, device=str(model.device))
    pred.load_state_dict(model.state_dict(), strict=True)
    h, w = image.shape[:2]
    return _reference_video(pred, _video_frames(h, w, VIDEO_FRAMES), VIDEO_OBJECTS)
