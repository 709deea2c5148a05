"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))  # the oracle and the synthetic-video helpers live there


def same_allocator() -> None:
    """Reuse freed memory as `samkit` commands do (samkit.runtime.tune_allocator). It is
    process-wide: every contender measured after this call gets it, the reference included."""
    from samkit.runtime import tune_allocator

    tune_allocator()


def median_time(fn, runs: int) -> float:
    """Median wall time of ``fn`` over ``runs`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit_json(payload: dict) -> None:
    print("JSON " + json.dumps(payload))


def object_logits(image, size: int = 256, shares=(0.3, 0.5, 0.7)):
    """(1, 3, size, size) float32 low-res logits shaped like a trained model's masks of the photo's
    objects, for timing what a click's upsampling does with real masks (the test weights give noise):
    per share s, the largest region of the photo's darkest s (grey, 5 px box blur, holes filled), the
    logit twice the signed distance to its rim in low-res pixels, clipped at +-20."""
    import numpy as np
    import torch
    from PIL import Image
    from scipy import ndimage

    grey = Image.fromarray(image).convert("L").resize((size, size), Image.Resampling.BILINEAR)
    grey = ndimage.uniform_filter(np.asarray(grey, np.float32), 5)
    out = []
    for share in shares:
        labels, _ = ndimage.label(grey <= np.quantile(grey, share))
        region = ndimage.binary_fill_holes(labels == np.bincount(labels.ravel())[1:].argmax() + 1)
        dist = ndimage.distance_transform_edt(region) - ndimage.distance_transform_edt(~region)
        out.append(np.clip(2.0 * dist, -20, 20))
    return torch.from_numpy(np.stack(out).astype(np.float32))[None]


def edge_tile_share(logits, hh: int, ww: int, threshold: float = 0.0) -> float:
    """The share of the (H, W) output tiles that samkit's upsampling computes for (1, M, h, w) logits
    (the others lie wholly on one side of the threshold: filled, not computed)."""
    from samkit.transforms import flat_tiles

    _, edge = flat_tiles(logits[0], hh, ww, threshold)
    return float(edge.float().mean())


def onnx_args(doc: str, **more):
    """The ONNX benchmarks' command line: --model, --threads, and ``more`` as {name: default}."""
    import argparse

    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--threads", type=int, default=2)
    for name, default in more.items():
        ap.add_argument(f"--{name}", type=type(default), default=default)
    return ap.parse_args()


def exported(model_name: str, threads: int, **load):
    """``model_name`` with perturbed official-layout weights (no download; ``load``: more
    ``load_model`` arguments), exported with ``samkit export onnx`` into a temporary folder, with
    ``threads`` torch threads. Returns (model, folder, seconds the export took)."""
    import tempfile

    import torch

    import oracle
    import samkit
    from samkit.export import export_onnx

    torch.set_num_threads(threads)
    model = samkit.load_model(model_name, checkpoint=oracle.checkpoint(model_name), device="cpu", **load)
    folder = Path(tempfile.mkdtemp())
    t = time.perf_counter()
    export_onnx(model, folder)
    return model, folder, time.perf_counter() - t
