"""Image benchmark: encoder latency and click latency, samkit vs the reference `sam2`, same weights.

    python benchmarks/bench_image.py [--variant sam2.1-hiera-tiny] [--runs 5] [--size 2250x1500]

Needs the oracle installed (bash scripts/test.sh does it). The weights are a perturbed reference
model saved as an official checkpoint (no download needed); timings do not depend on the values.
Prints a table and a JSON line. Median of --runs after one warm-up, the contenders taking turns
run by run.

Contenders: the reference, samkit's exact path, its fast path as `samkit segment --fast` runs it, and
the fast path with `compile=True` as `samkit serve --fast` runs it (its compilation is done, and
timed, before the timings).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from _common import DATA, same_allocator


def fast_agreement(exact, fast, size) -> dict:
    """samkit.bench.click_agreement (the fast path's best-mask IoU against the exact path over 9 random
    clicks) on each photo of ../shared/data/images, resized to ``size`` when given."""
    from PIL import Image

    from samkit.bench import click_agreement
    from samkit.transforms import load_image

    out = {}
    for path in sorted((DATA / "images").glob("*.jpg")):
        image = load_image(path)
        if size:
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        out[path.stem] = click_agreement(exact, fast, image)
    return out


def main() -> None:
    same_allocator()  # both contenders reuse freed memory, as `samkit` commands do
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="sam2.1-hiera-tiny")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", default=str(DATA / "images" / "truck.jpg"))
    ap.add_argument("--size", help="resize the photo to WxH first (issue #6 quotes clicks at 2250x1500)")
    args = ap.parse_args()

    import oracle
    import samkit
    from samkit.transforms import load_image, warm_up_compiled

    oracle.setup()
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    ckpt = oracle.checkpoint(args.variant)
    image = load_image(args.image)
    if args.size:
        from PIL import Image

        size = tuple(int(v) for v in args.size.split("x"))
        image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
    h, w = image.shape[:2]
    click = dict(point_coords=[[w * 0.45, h * 0.5]], point_labels=[1])
    clicks8 = dict(point_coords=[[w * (0.1 + 0.1 * i), h * 0.5] for i in range(8)], point_labels=[1, 0] * 4)

    ref = SAM2ImagePredictor(oracle.build_reference(args.variant, ckpt))
    ours = samkit.ImagePredictor(samkit.load_model(args.variant, checkpoint=ckpt, device="cpu"))
    fast = samkit.ImagePredictor(
        samkit.load_model(args.variant, checkpoint=ckpt, device="cpu", precision="bf16")
    )
    compiled = samkit.ImagePredictor(
        samkit.load_model(args.variant, checkpoint=ckpt, device="cpu", precision="bf16", compile=True)
    )
    t0 = time.perf_counter()
    if not warm_up_compiled():
        raise SystemExit("torch.compile failed here: no compiled contender to time")
    compile_s = time.perf_counter() - t0
    contenders = (("reference", ref), ("samkit", ours), ("samkit-fast", fast), ("fast+compile", compiled))
    with torch.inference_mode():
        # encodes too take turns run by run: this VM's speed drifts within a run, and timing each
        # contender's encodes in one block set one contender's slow minutes against another's quick ones
        enc = {name: [] for name, _ in contenders}
        for run in range(args.runs + 1):
            # the order flips every run: no contender always runs right after the same other one
            for name, p in contenders if run % 2 == 0 else contenders[::-1]:
                t = time.perf_counter()
                p.set_image(image)
                if run:  # the first round is the warm-up
                    enc[name].append(time.perf_counter() - t)
        rows = {name: {"encode_s": statistics.median(v)} for name, v in enc.items()}
        # clicks after all encodes, contenders interleaved run by run: on this Xeon a click measured
        # right after bfloat16 (AMX) encodes ran up to 40% slower than the same click measured later
        times = {name: ([], []) for name, _ in contenders}
        for run in range(args.runs + 1):
            for name, p in contenders if run % 2 == 0 else contenders[::-1]:
                for kind, kw in enumerate((click, dict(clicks8, multimask_output=False))):
                    t = time.perf_counter()
                    p.predict(**kw)
                    if run:  # the first round is the warm-up
                        times[name][kind].append(time.perf_counter() - t)
        for name, (c1, c8) in times.items():
            rows[name].update(click_ms=statistics.median(c1) * 1e3, click8_ms=statistics.median(c8) * 1e3)

    print(f"{args.variant}, {w}x{h} image, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"fast+compile: compiled in {compile_s:.1f} s before the timings")
    print(f"{'':<12}{'encode (s)':>12}{'click (ms)':>12}{'8 pts (ms)':>12}")
    for name, r in rows.items():
        print(f"{name:<12}{r['encode_s']:>12.3f}{r['click_ms']:>12.1f}{r['click8_ms']:>12.1f}")
    speed = {k: rows["reference"][k] / rows["samkit"][k] for k in rows["samkit"]}
    print(f"{'speed-up':<12}" + "".join(f"{v:>11.2f}x" for v in speed.values()))
    with torch.inference_mode():
        agree = fast_agreement(ours, fast, size if args.size else None)
    for name, a in agree.items():
        print(
            f"fast vs exact, best mask of 9 clicks on {name}: IoU min {a['min_iou']:.4f} mean {a['mean_iou']:.4f}, "
            f"score diff <= {a['max_score_diff']:.4f}"
        )
    payload = {
        "variant": args.variant,
        "image": [w, h],
        "rows": rows,
        "speedup": speed,
        "fast_vs_exact": agree,
        "compile_s": compile_s,
    }
    print(json.dumps(payload))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
