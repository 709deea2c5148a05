"""`samkit bench`: latency and throughput of samkit on this machine, side by side with the reference
`sam2` package when it is installed, on the same weights, in one run.

Measures image encoding (batch 1, and batched throughput), click latency (``predict`` to a
full-resolution numpy mask, one point and eight points), automatic masks for one image, and video
tracking seconds per frame for 1 and 4 objects, for the exact path and the fast path (bfloat16 image
encoder; where bf16 is fast, a bfloat16 mask decoder and memory attention under bf16 autocast), with
the fast path's mask agreement with the exact path on the same image. Encode and click figures are
the median of ``runs`` after a warm-up, the contenders taking turns run by run; automatic masks are
one run, video the mean over the tracked frames.

The reference's video predictor stores its memory in bfloat16 and runs only under autocast (as its own
demo does on a GPU): its video figures are taken under bf16 autocast, on the CPU too, and compare with
samkit's fast path. On a CUDA device the reference is also measured the way its README runs it there,
every call under bf16 autocast (the ``reference-bf16`` row, which then holds its video figures).

GPU work is asynchronous: every timed call ends with a device synchronization, so a figure is the time
until the result exists, not until the work was queued.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..modeling import SAM2Model
from ._common import CLIError, add_model_args, load

VIDEO_FRAMES = 4  # tracked frames after the prompted one
VIDEO_OBJECTS = (1, 4)
BATCH = 4  # images per set_image_batch call for the batched-throughput figure


def _sync() -> None:
    """Wait for queued GPU work (a no-op where CUDA was never used in this process)."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object]) -> float:
    """Seconds from the call to its result, the GPU's queued work included."""
    _sync()
    t = time.perf_counter()
    fn()
    _sync()
    return time.perf_counter() - t


def median_seconds(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    return statistics.median(_timed(fn) for _ in range(max(1, runs)))


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
        for name, ref_name, label in (
            ("samkit", "reference", "speed-up"),
            ("samkit-fast", "reference", "fast speed-up"),
            ("samkit-fast", "reference-bf16", "fast/ref-bf16"),
        ):
            if ref_name not in self.rows or name not in self.rows:
                continue
            ref, ours = self.rows[ref_name], self.rows[name]
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

    def policies(self) -> str:
        """The execution policy (:mod:`samkit.policy`) of each timed samkit model, one line each:
        ``samkit policy: device=cpu, precision=fp32, ...``, for the header of ``samkit bench``."""
        return "\n".join(
            f"{name} policy: " + ", ".join(f"{k}={v}" for k, v in policy.items())
            for name, policy in self.info.get("policy", {}).items()
        )


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


def image_figures(predictor, image: np.ndarray) -> dict[str, Callable[[], object]]:
    """The short image figures of one contender, as calls to time: an ImagePredictor or the reference's
    SAM2ImagePredictor (same methods and arguments). Ordered so that the clicks find the image set."""
    h, w = image.shape[:2]
    click = dict(point_coords=np.array([[w * 0.45, h * 0.5]]), point_labels=np.array([1]))
    eight = dict(
        point_coords=np.array([[w * (0.1 + 0.1 * i), h * 0.5] for i in range(8)]),
        point_labels=np.array([1, 0] * 4),
        multimask_output=False,
    )
    return {
        "encode_batch_img_s": lambda: predictor.set_image_batch([image] * BATCH),
        "encode_s": lambda: predictor.set_image(image),
        "click_ms": lambda: predictor.predict(**click),
        "click8_ms": lambda: predictor.predict(**eight),
    }


def interleaved_medians(figures: dict[str, dict[str, Callable[[], object]]], runs: int) -> dict[str, dict]:
    """Median seconds of ``figures[contender][figure]()``, figure by figure, the contenders taking
    turns run by run in alternating order (after one warm-up call each): this VM's speed drifts by
    15-30% within minutes, and measuring one contender after the other would hand the drift to
    whoever came last."""
    out: dict[str, dict] = {name: {} for name in figures}
    keys = list(dict.fromkeys(k for calls in figures.values() for k in calls))
    with torch.inference_mode():
        for key in keys:
            names = [n for n in figures if key in figures[n]]
            for n in names:
                figures[n][key]()
            times: dict[str, list[float]] = {n: [] for n in names}
            for run in range(max(1, runs)):
                # the order flips every run, so that no contender always runs right after another
                # (drift within a round then falls on each side alike)
                for n in names if run % 2 == 0 else names[::-1]:
                    times[n].append(_timed(figures[n][key]))
            for n in names:
                out[n][key] = statistics.median(times[n])
    return out


def _as_figures(seconds: dict[str, float]) -> dict[str, float]:
    """Median seconds -> the reported units (ms for clicks, images/s for batched encoding)."""
    out = {}
    for k, v in seconds.items():
        out[k] = BATCH / v if k == "encode_batch_img_s" else 1e3 * v if k.endswith("_ms") else v
    return out


def samkit_long_figures(
    model: SAM2Model,
    image: np.ndarray,
    auto: bool = True,
    video_frames: int = VIDEO_FRAMES,
    video_objects: tuple[int, ...] = VIDEO_OBJECTS,
) -> dict[str, float]:
    """Automatic masks for the image (16 x 16 points, one run) and video seconds per tracked frame."""
    from ..predictors import AutomaticMaskGenerator, VideoPredictor

    h, w = image.shape[:2]
    out: dict[str, float] = {}
    if auto:
        gen = AutomaticMaskGenerator(model, points_per_side=16, fast=model.precision == "bf16")
        out["auto_s"] = median_seconds(lambda: gen.generate(image), 1)
    frames = _video_frames(h, w, video_frames)

    def track(frames: list[np.ndarray], n: int) -> float:
        vp = VideoPredictor(model, progress=False)
        st = vp.init_state(frames)
        with torch.inference_mode():
            for i, point in enumerate(_video_clicks(n, h, w)):
                vp.add_new_points_or_box(st, 0, i + 1, points=[point], labels=[1])
            return _seconds_per_tracked_frame(vp.propagate_in_video(st))

    if video_objects:
        # warm-up: a GPU's first tracking steps pick kernels and fill caches (several times slower
        # than later frames); the reference gets one too
        track(frames[:2], video_objects[0])
    for n in video_objects:
        out[f"video{n}_s"] = track(frames, n)
    return out


def _video_clicks(n: int, h: int, w: int) -> list[list[float]]:
    return [[w * (i + 1) / (n + 1), h * 0.5] for i in range(n)]


def _seconds_per_tracked_frame(frames) -> float:
    """Mean seconds per frame of a propagate_in_video generator, after the prompted frame."""
    next(frames)  # the prompted frame: no tracking work
    _sync()
    t = time.perf_counter()
    k = sum(1 for _ in frames)
    _sync()
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
    loads = []
    with tempfile.TemporaryDirectory() as folder:
        for i, f in enumerate(frames):
            Image.fromarray(f).save(f"{folder}/{i:05d}.jpg", quality=95)
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16):
            for n in (objects[0], *objects) if objects else ():  # the first: a warm-up, as samkit's
                t = time.perf_counter()
                st = pred.init_state(folder)  # reads and resizes every frame, before any tracking
                loads.append((time.perf_counter() - t) / len(frames))
                for i, point in enumerate(_video_clicks(n, h, w)):
                    pred.add_new_points_or_box(st, 0, i + 1, points=np.array([point]), labels=np.array([1]))
                out[f"video{n}_s"] = _seconds_per_tracked_frame(pred.propagate_in_video(st))
    if loads:
        # samkit reads each frame while it tracks (inside its figures); the reference, all up front
        out["frames_load_s"] = statistics.median(loads[1:] or loads)
    return out


def measure(
    model: SAM2Model,
    image: np.ndarray | None = None,
    runs: int = 3,
    reference: bool = True,
    auto: bool = True,
    compile: bool = True,
) -> BenchResult:
    """Benchmark samkit's exact path, its fast path (for a float32 model) and the reference (if
    importable and the model is an official variant), on the same weights and inputs. The short
    figures (encode, clicks) are taken with the contenders interleaved run by run; the long ones
    (automatic masks, video) one contender after the other, once each. ``compile``: the fast path
    as ``load_model(..., compile=True)`` gives it (a server's, see :func:`samkit.load_model`), its
    compilation done before the timings and reported in ``info["fast_compile_s"]``."""
    import copy

    from ..checkpoints import apply_precision
    from ..predictors import ImagePredictor

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
    if model.device.type == "cuda":
        res.info["gpu"] = torch.cuda.get_device_name(model.device)
    models = {"samkit": model}
    if model.precision == "fp32":
        models["samkit-fast"] = apply_precision(copy.deepcopy(model), "bf16")
        if compile:
            from ..transforms import compile_error, warm_up_compiled

            fast = models["samkit-fast"]
            fast.policy = fast.policy.replace(compile=True)
            t0 = time.perf_counter()
            ok = warm_up_compiled()
            res.info["fast_compile_s"] = (
                round(time.perf_counter() - t0, 2) if ok else f"compile failed, eager: {compile_error()}"
            )
    # how each timed model runs (samkit.policy): the header says what the figures measured
    res.info["policy"] = {name: m.policy.as_dict() for name, m in models.items()}
    predictors = {name: ImagePredictor(m) for name, m in models.items()}
    ref_model = _reference_model(model) if reference else None
    # on a GPU the reference is also timed as its README runs it there: under bf16 autocast
    ref_bf16 = ref_model is not None and model.device.type == "cuda"
    if ref_model is not None:
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        predictors["reference"] = SAM2ImagePredictor(ref_model)
    elif reference:
        res.info["reference"] = (
            "not measured: sam2 (with torchvision) is not importable or the model has no official config"
        )
    figures = {n: image_figures(p, image) for n, p in predictors.items()}
    if ref_bf16:
        calls = image_figures(SAM2ImagePredictor(ref_model), image)
        figures["reference-bf16"] = {k: _under_autocast(f, model.device) for k, f in calls.items()}
    medians = interleaved_medians(figures, runs)
    res.rows = {name: _as_figures(m) for name, m in medians.items()}
    if "samkit-fast" in predictors:
        with torch.inference_mode():
            res.info["fast_vs_exact"] = click_agreement(
                predictors["samkit"], predictors["samkit-fast"], image
            )
    del predictors

    for name, m in models.items():
        res.rows[name].update(samkit_long_figures(m, image, auto=auto))
    if ref_model is not None:
        if auto:
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

            gen = SAM2AutomaticMaskGenerator(ref_model, points_per_side=16)
            res.rows["reference"]["auto_s"] = median_seconds(lambda: gen.generate(image), 1)
            if ref_bf16:
                generate = _under_autocast(lambda: gen.generate(image), model.device)
                res.rows["reference-bf16"]["auto_s"] = median_seconds(generate, 1)
        try:
            video = _reference_video_rows(model, image)
            res.info["reference_frames_load_s"] = video.pop("frames_load_s", None)
            res.rows["reference-bf16" if ref_bf16 else "reference"].update(video)
            res.info["reference_video_autocast"] = True
            res.info["reference_video"] = (
                "reference video under bf16 autocast (its video predictor needs it): compare samkit-fast"
                + (" (in the reference-bf16 row)" if ref_bf16 else "")
            )
        except Exception as e:  # its video path needs more than its image path; keep the rest
            res.info["reference_video"] = f"reference video not measured: {type(e).__name__}: {e}"
    return res


def _under_autocast(fn: Callable[[], object], device: torch.device) -> Callable[[], object]:
    """``fn`` called under bf16 autocast on ``device`` (and inference mode, as the timings run)."""

    def call():
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16):
            return fn()

    return call


def _reference_model(model: SAM2Model):
    """The reference's SAM2Base with this model's weights, or None where the reference is not
    importable (it needs torchvision) or the variant is not an official one."""
    try:
        from sam2.build_sam import build_sam2
        from sam2.sam2_image_predictor import SAM2ImagePredictor  # noqa: F401  (imports torchvision)
    except Exception:
        return None
    if not model.cfg.hf_repo:
        return None
    ref_model = build_sam2(_reference_config(model), None, device=str(model.device))
    ref_model.load_state_dict(model.state_dict(), strict=True)  # the very same weights
    return ref_model


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


# --- where the time goes (--profile) --------------------------------------------------------------


PROFILED = ("encode", "click", "track")


def _profile_calls(predictor, video, image: np.ndarray) -> dict[str, Callable[[], Callable[[], object]]]:
    """An encode, a click and a tracked frame of a contender, each as a function that prepares the
    call (not profiled) and returns it: ``predictor`` an ImagePredictor or the reference's (same
    methods), ``video`` a function returning a generator that tracks one object from frame 0 of two
    frames (the second is the tracked one)."""
    h, w = image.shape[:2]

    def encode():
        return lambda: predictor.set_image(image)

    def click():
        predictor.set_image(image)
        return lambda: predictor.predict(
            point_coords=np.array([[w * 0.45, h * 0.5]]), point_labels=np.array([1])
        )

    def track():
        frames = video()
        next(frames)  # the prompted frame (its encoding and the click are not profiled)
        return lambda: next(frames)  # one frame tracked from memory

    return {"encode": encode, "click": click, "track": track}


def _samkit_video(model: SAM2Model, image: np.ndarray):
    from ..predictors import VideoPredictor

    h, w = image.shape[:2]
    frames = _video_frames(h, w, 1)
    vp = VideoPredictor(model, progress=False)

    def run():
        st = vp.init_state(frames)
        vp.add_new_points_or_box(st, 0, 1, points=_video_clicks(1, h, w), labels=[1])
        return vp.propagate_in_video(st)

    return run


def _reference_video_call(model: SAM2Model, image: np.ndarray, folder: str):
    from PIL import Image
    from sam2.build_sam import build_sam2_video_predictor

    pred = build_sam2_video_predictor(_reference_config(model), None, device=str(model.device))
    pred.load_state_dict(model.state_dict(), strict=True)
    h, w = image.shape[:2]
    for i, f in enumerate(_video_frames(h, w, 1)):
        Image.fromarray(f).save(f"{folder}/{i:05d}.jpg", quality=95)

    def run():
        st = pred.init_state(folder)
        pred.add_new_points_or_box(st, 0, 1, points=np.array(_video_clicks(1, h, w)), labels=np.array([1]))
        return pred.propagate_in_video(st)

    return run


def profile(model: SAM2Model, image: np.ndarray | None = None, reference: bool = True) -> dict:
    """Where the time of an encode, a click and a tracked frame goes, by kind of operation
    (:func:`samkit.profiling.profile_split`), for the exact path, the fast path (for a float32 model)
    and the reference (when importable; its tracking under bf16 autocast, as it runs), with this
    machine's fp32 and bf16 matmul rates. Each call is profiled once after a warm-up call."""
    import copy
    import tempfile

    from ..checkpoints import apply_precision
    from ..predictors import ImagePredictor
    from ..profiling import matmul_gflops, profile_split

    image = image if image is not None else _test_image(1200, 1800)
    dev = model.device
    out: dict = {
        "info": {"model": model.cfg.name, "device": str(dev), "threads": torch.get_num_threads()},
        "matmul_gflops": {
            "fp32": round(matmul_gflops(torch.float32, device=dev), 2),
            "bf16": round(matmul_gflops(torch.bfloat16, device=dev), 2),
        },
        "rows": {},
    }
    contenders = {"samkit": model}
    if model.precision == "fp32":
        contenders["samkit-fast"] = apply_precision(copy.deepcopy(model), "bf16")
    calls = {
        name: _profile_calls(ImagePredictor(m), _samkit_video(m, image), image)
        for name, m in contenders.items()
    }
    with tempfile.TemporaryDirectory() as folder:
        ref_model = _reference_model(model) if reference else None
        if ref_model is not None:
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            ref = _profile_calls(
                SAM2ImagePredictor(ref_model), _reference_video_call(model, image, folder), image
            )
            # its video predictor runs only under bf16 autocast (it stores memory in bf16)
            prepare = ref["track"]
            ref["track"] = lambda: _under_autocast(_under_autocast(prepare, dev)(), dev)
            calls["reference"] = ref
        elif reference:
            out["info"]["reference"] = (
                "not profiled: sam2 is not importable or the model is not an official variant"
            )
        with torch.inference_mode():
            for name, figs in calls.items():
                out["rows"][name] = {}
                for fig in PROFILED:
                    figs[fig]()()  # warm-up
                    out["rows"][name][fig] = profile_split(figs[fig](), dev)
    return out


def profile_table(result: dict) -> str:
    """The profile as text: per contender and figure, milliseconds per kind and its share."""
    from ..profiling import KINDS

    head = f"{'':<13}{'':<8}{'wall ms':>9}" + "".join(f"{k:>22}" for k in KINDS)
    lines = [head]
    for name, figs in result["rows"].items():
        for fig, split in figs.items():
            ops = sum(split[k] for k in KINDS) or 1.0
            cells = "".join(f"{1e3 * split[k]:>13.1f} ({100 * split[k] / ops:>3.0f}%)" for k in KINDS)
            lines.append(f"{name:<13}{fig:<8}{1e3 * split['total']:>9.1f}{cells}")
    return "\n".join(lines)


# --- the command ---------------------------------------------------------------------------------


def add_parser(sub) -> argparse.ArgumentParser:
    be = sub.add_parser(
        "bench",
        help="measure speed here, side by side with the reference sam2 when installed",
        description="Encode latency and batched throughput, click latency (1 and 8 points), automatic masks "
        "and video seconds per frame (1 and 4 objects), median of --runs; the reference sam2 package on the "
        "same weights when it is importable. Prints a table and a JSON line.",
    )
    be.add_argument("--image", default=None, help="image to use (default: a generated 1800x1200 picture)")
    be.add_argument("--runs", type=int, default=3, help="timed runs per figure after a warm-up (default 3)")
    be.add_argument("--no-reference", action="store_true", help="do not measure the reference")
    be.add_argument("--no-auto", action="store_true", help="skip automatic masks (slow)")
    be.add_argument(
        "--profile",
        action="store_true",
        help="instead of timings: where the time of an encode, a click and a tracked frame goes, by kind of "
        "operation (matmul/attention, norms and elementwise, layout copies, upsampling), for exact, fast and "
        "the reference, with this machine's fp32 and bf16 matmul rates",
    )
    be.add_argument(
        "--no-compile",
        action="store_true",
        help="time the fast path without its torch.compile'd mask upsampling (as `segment --fast` runs it)",
    )
    add_model_args(be)
    return be


def run(args: argparse.Namespace) -> int:
    from ..transforms import load_image

    if args.runs < 1:
        raise CLIError("--runs must be at least 1")
    image = load_image(args.image) if args.image else None
    model = load(args)
    if args.profile:
        result = profile(model, image, reference=not args.no_reference)
        rates = result["matmul_gflops"]
        print(
            f"{model.cfg.name} on {model.device}, {torch.get_num_threads()} threads; 1024x1024 matmul: "
            f"{rates['fp32']:.1f} GFLOP/s fp32, {rates['bf16']:.1f} bf16 ({rates['bf16'] / rates['fp32']:.2f}x)"
        )
        print("milliseconds by kind of operation (operator self time; share of the operators' time):")
        print(profile_table(result))
        if "reference" in result["info"]:
            print(result["info"]["reference"])
        print("JSON " + json.dumps(result))
        return 0
    res = measure(
        model,
        image,
        runs=args.runs,
        reference=not args.no_reference,
        auto=not args.no_auto,
        compile=not args.no_compile,
    )
    print(
        f"{res.info['model']} on {res.info['device']}"
        + (f" ({res.info['gpu']})" if "gpu" in res.info else "")
        + f", {res.info['threads']} threads, torch {res.info['torch']}, "
        f"image {res.info['image'][1]}x{res.info['image'][0]}"
    )
    if res.info.get("policy"):
        print(res.policies())
    print(res.table())
    if "fast_vs_exact" in res.info:
        a = res.info["fast_vs_exact"]
        print(
            f"fast vs exact, best mask of 9 random clicks: IoU min {a['min_iou']:.4f} mean {a['mean_iou']:.4f}, "
            f"scores within {a['max_score_diff']:.4f}"
        )
    if "fast_compile_s" in res.info:
        c = res.info["fast_compile_s"]
        print(
            f"fast path: mask upsampling compiled in {c} s before timing (--no-compile: eager)"
            if isinstance(c, float)
            else f"fast path: {c}"
        )
    for key in ("reference", "reference_video"):
        if key in res.info:
            print(res.info[key])
    if res.info.get("reference_frames_load_s"):
        print(
            f"the reference reads and resizes every frame before tracking ({res.info['reference_frames_load_s']:.3f} "
            "s per frame, not in its video figures); samkit reads each frame while it tracks (in its figures)"
        )
    print("JSON " + json.dumps({"info": res.info, "rows": res.rows}))
    return 0
