"""Batch benchmark: `samkit batch` (local engine) against a plain loop, images/s, same weights.

    python benchmarks/bench_batch.py [--images 8] [--auto-images 3] [--points-per-side 16]

Batch rows include starting the worker processes and loading their models (a few seconds), so
the figures favour the plain loop on short runs. The plain loop is what a user writes without samkit batch: for each image, load it, ``set_image``,
``predict`` each prompt (best of three for one click), RLE-encode and write one JSON. With the oracle
installed, the same loop with the reference ``SAM2ImagePredictor`` is timed too. Images are crops of
the photos in ../shared/data (1500x1000 JPEGs), two prompts each (a click and a box); automatic masks
use --points-per-side. Weights: a perturbed reference checkpoint (timings do not depend on values).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import DATA, emit_json, same_allocator
from PIL import Image


def make_inputs(folder: Path, n: int) -> list[str]:
    """n 1500x1000 JPEG crops of the test photos, and a prompt file (a click and a box per image)."""
    from samkit.transforms import load_image

    photos = [load_image(DATA / "images" / name) for name in ("truck.jpg", "groceries.jpg")]
    keys, lines = [], []
    for i in range(n):
        src = Image.fromarray(photos[i % 2])
        w, h = src.size
        dx, dy = (i * 37) % max(1, w // 10), (i * 23) % max(1, h // 10)
        im = src.crop((dx, dy, w - dx // 2, h - dy // 2)).resize((1500, 1000), Image.BILINEAR)
        key = f"img{i:03d}.jpg"
        im.save(folder / key, quality=92)
        keys.append(key)
        lines.append({"image": key, "points": [[700 + 10 * i, 500]], "labels": [1]})
        lines.append({"image": key, "box": [300, 200, 1100, 900]})
    (folder.parent / "prompts.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return keys


def plain_loop(predictor, folder: Path, keys: list[str], prompts: dict, out: Path) -> None:
    from samkit import rle
    from samkit.transforms import load_image

    out.mkdir(parents=True, exist_ok=True)
    for key in keys:
        predictor.set_image(load_image(folder / key))
        anns = []
        for p in prompts[key]:
            masks, scores, _ = predictor.predict(
                point_coords=p.point_coords,
                point_labels=p.point_labels,
                box=p.box,
                multimask_output=p.multimask,
            )
            best = int(np.argmax(scores))
            anns.append({"segmentation": rle.encode(masks[best] > 0), "score": float(scores[best])})
        (out / f"{key}.json").write_text(json.dumps(anns))


def auto_loop(gen, folder: Path, keys: list[str], out: Path) -> None:
    from samkit.transforms import load_image

    out.mkdir(parents=True, exist_ok=True)
    for key in keys:
        anns = gen.generate(load_image(folder / key))
        (out / f"{key}.json").write_text(json.dumps(anns))


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    same_allocator()  # both contenders reuse freed memory, as `samkit` commands do
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="sam2.1-hiera-tiny")
    ap.add_argument("--images", type=int, default=8, help="images for the prompted runs")
    ap.add_argument("--auto-images", type=int, default=3, help="images for the automatic runs (0: skip)")
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--no-reference", action="store_true")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds (median); contenders interleaved")
    args = ap.parse_args()

    import oracle
    import samkit
    from samkit.batch import BatchSettings, load_prompts, run_batch

    ckpt = oracle.checkpoint(args.variant)
    tmp = Path(tempfile.mkdtemp(prefix="samkit-bench-batch-"))
    folder = tmp / "photos"
    folder.mkdir()
    keys = make_inputs(folder, max(args.images, args.auto_images))
    prompts = load_prompts(tmp / "prompts.jsonl")
    model = samkit.load_model(args.variant, checkpoint=ckpt, device="cpu")
    rows: dict[str, dict] = {}

    # warm-up (first-call allocations), not timed
    samkit.ImagePredictor(model).set_image(np.zeros((64, 64, 3), np.uint8))

    n = args.images
    sub = tmp / "prompted"
    sub.mkdir()
    for k in keys[:n]:
        (sub / k).symlink_to(folder / k)
    pf = tmp / "prompts-sub.jsonl"
    pf.write_text(
        "".join(
            line
            for line in (tmp / "prompts.jsonl").read_text().splitlines(True)
            if json.loads(line)["image"] in keys[:n]
        )
    )
    exact = BatchSettings(model=args.variant, checkpoint=str(ckpt), device="cpu", mode="prompts")
    fast = BatchSettings(
        model=args.variant, checkpoint=str(ckpt), device="cpu", mode="prompts", precision="bf16"
    )
    runs = {
        "prompts: plain loop (samkit predictor)": lambda out: plain_loop(
            samkit.ImagePredictor(model), folder, keys[:n], prompts, out
        ),
        "prompts: samkit batch, 1 process": lambda out: run_batch(
            sub, out, exact, prompts=pf, model=model, progress=False
        ),
        "prompts: samkit batch, 2 processes": lambda out: run_batch(
            sub, out, exact, prompts=pf, processes=2, progress=False
        ),
        "prompts: samkit batch --fast, 2 processes": lambda out: run_batch(
            sub, out, fast, prompts=pf, processes=2, progress=False
        ),
    }
    if not args.no_reference:
        oracle.setup()
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        ref = SAM2ImagePredictor(oracle.build_reference(args.variant, ckpt))

        def ref_loop(out):
            with torch.inference_mode():
                plain_loop(ref, folder, keys[:n], prompts, out)

        runs["prompts: plain loop (reference predictor)"] = ref_loop
    if args.auto_images:
        m = args.auto_images
        auto_dir = tmp / "auto-photos"
        auto_dir.mkdir()
        for k in keys[:m]:
            (auto_dir / k).symlink_to(folder / k)
        settings = {"points_per_side": args.points_per_side}
        gen = samkit.AutomaticMaskGenerator(model, output_mode="coco_rle", **settings)
        auto = BatchSettings(
            model=args.variant, checkpoint=str(ckpt), device="cpu", mode="auto", auto=settings
        )
        runs["auto: plain loop"] = lambda out: auto_loop(gen, folder, keys[:m], out)
        runs["auto: samkit batch, 1 process"] = lambda out: run_batch(
            auto_dir, out, auto, model=model, progress=False
        )
        runs["auto: samkit batch, 2 processes"] = lambda out: run_batch(
            auto_dir, out, auto, processes=2, progress=False
        )

    # rounds interleave the contenders, so drift of a shared machine hits all of them alike
    times: dict[str, list[float]] = {name: [] for name in runs}
    for rnd in range(args.rounds):
        for i, (name, fn) in enumerate(runs.items()):
            out = tmp / f"out-{rnd}-{i}"
            times[name].append(timed(lambda fn=fn, out=out: fn(out)))
    for name, ts in times.items():
        rows[name] = {
            "images": n if name.startswith("prompts") else args.auto_images,
            "seconds": statistics.median(ts),
        }

    for r in rows.values():
        r["images_per_s"] = r["images"] / r["seconds"]
    print(f"{args.variant}, 1500x1000 JPEGs, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'':<44}{'images':>8}{'seconds':>10}{'images/s':>10}")
    for name, r in rows.items():
        print(f"{name:<44}{r['images']:>8}{r['seconds']:>10.2f}{r['images_per_s']:>10.3f}")
    base = rows["prompts: plain loop (samkit predictor)"]["images_per_s"]
    auto_base = rows.get("auto: plain loop", {}).get("images_per_s")
    for name, r in rows.items():
        if name.startswith("prompts: samkit"):
            print(f"{name} vs plain loop: {r['images_per_s'] / base:.2f}x")
        elif name.startswith("auto: samkit"):
            print(f"{name} vs plain loop: {r['images_per_s'] / auto_base:.2f}x")
    emit_json({"variant": args.variant, "rows": rows})


if __name__ == "__main__":
    main()
