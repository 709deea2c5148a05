"""Image benchmark: encoder latency and click latency, samkit vs the reference `sam2`, same weights.

    python benchmarks/bench_image.py [--variant sam2.1-hiera-tiny] [--runs 5] [--size 2250x1500]

Needs the oracle installed (bash scripts/test.sh does it). The weights are a perturbed reference
model saved as an official checkpoint (no download needed). Timings do not depend on the weights'
values except for one step: samkit's upsampling of a click's masks fills the flat parts of a mask
without computing them, and the test weights' masks are noise, all edges. The "obj" columns time
the same clicks with every contender's decoder output swapped for object-shaped masks of the photo
(_common.object_logits; the decoders still run), as trained weights would give. Prints a table and
a JSON line. Median of --runs after one warm-up, the contenders taking turns run by run.

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
from _common import DATA, edge_tile_share, object_logits, same_allocator


def fast_agreement(exact, fast, size) -> dict:
    """samkit.cli.bench.click_agreement (the fast path's best-mask IoU against the exact path over 9 random
    clicks) on each photo of ../shared/data/images, resized to ``size`` when given."""
    from PIL import Image

    from samkit.cli.bench import click_agreement
    from samkit.transforms import load_image

    out = {}
    for path in sorted((DATA / "images").glob("*.jpg")):
        image = load_image(path)
        if size:
            image = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))
        out[path.stem] = click_agreement(exact, fast, image)
    return out


def with_low_res(predictor, shaped: torch.Tensor):
    """Make ``predictor`` (samkit's or the reference's) decode as usual but then use ``shaped``
    (1, 3, h, w) logits (its first mask when one is asked for) as the decoder's low-res masks.
    Returns the function that undoes it."""

    def swap(low: torch.Tensor) -> torch.Tensor:
        return shaped[:, : low.shape[1]].expand_as(low).to(low.dtype).clone()

    if hasattr(predictor, "_decode"):  # samkit: the decoder step of ImagePredictor._predict
        real = predictor._decode

        def decode(*args, **kwargs):
            low, scores = real(*args, **kwargs)
            return swap(low), scores

        predictor._decode = decode
        return lambda: delattr(predictor, "_decode")
    # the reference: its mask decoder module returns (masks, scores, tokens, object scores)
    hook = predictor.model.sam_mask_decoder.register_forward_hook(lambda m, a, out: (swap(out[0]), *out[1:]))
    return hook.remove


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

        def click_round(prefix: str) -> None:
            # contenders interleaved run by run, the order flipping, as for the encodes
            times = {name: ([], []) for name, _ in contenders}
            for run in range(args.runs + 1):
                for name, p in contenders if run % 2 == 0 else contenders[::-1]:
                    for kind, kw in enumerate((click, dict(clicks8, multimask_output=False))):
                        t = time.perf_counter()
                        p.predict(**kw)
                        if run:  # the first round is the warm-up
                            times[name][kind].append(time.perf_counter() - t)
            for name, (c1, c8) in times.items():
                rows[name][prefix + "click_ms"] = statistics.median(c1) * 1e3
                rows[name][prefix + "click8_ms"] = statistics.median(c8) * 1e3

        # clicks after all encodes: on this Xeon a click measured right after bfloat16 (AMX) encodes
        # ran up to 40% slower than the same click measured later
        click_round("")
        # the same clicks, each decoder's low-res masks swapped for object-shaped ones (the decoders
        # still run): the test weights' masks are noise, and samkit's upsampling skips a real mask's
        # flat parts, so its time depends on the mask; the reference's does not
        shaped = object_logits(image)
        undo = [with_low_res(p, shaped) for _, p in contenders]
        click_round("obj_")
        for fn in undo:
            fn()

    print(f"{args.variant}, {w}x{h} image, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"fast+compile: compiled in {compile_s:.1f} s before the timings")
    print(f"object-shaped masks: {edge_tile_share(shaped, h, w):.0%} of the output tiles on an edge")
    heads = ("encode (s)", "click (ms)", "8 pts (ms)", "obj click", "obj 8 pts")
    print(f"{'':<12}" + "".join(f"{k:>12}" for k in heads))
    for name, r in rows.items():
        print(
            f"{name:<12}{r['encode_s']:>12.3f}{r['click_ms']:>12.1f}{r['click8_ms']:>12.1f}"
            f"{r['obj_click_ms']:>12.1f}{r['obj_click8_ms']:>12.1f}"
        )
    labels = {"samkit": "speed-up", "samkit-fast": "  fast", "fast+compile": "  +compile"}
    speed = {name: {k: rows["reference"][k] / v for k, v in rows[name].items()} for name in labels}
    for name, label in labels.items():
        print(f"{label:<12}" + "".join(f"{v:>11.2f}x" for v in speed[name].values()))
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
        "speedup": speed["samkit"],
        "fast_vs_exact": agree,
        "compile_s": compile_s,
    }
    print(json.dumps(payload))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
