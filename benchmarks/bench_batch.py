"""Batch benchmark: `samkit batch` (local engine) against a plain loop, images/s, same weights.

    python benchmarks/bench_batch.py [--images 8] [--auto-images 3] [--points-per-side 16]

The plain loop is what a user writes without samkit batch: for each image, load it, ``set_image``,
``predict`` each prompt (best of three for one click), RLE-encode and write one JSON. With the oracle
installed, the same loop with the reference ``SAM2ImagePredictor`` is timed too. Images are crops of
the photos in ../shared/data (1500x1000 JPEGs), two prompts each (a click and a box); automatic masks
use --points-per-side. Weights: a perturbed reference checkpoint (timings do not depend on values).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import DATA, emit_json
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
                point_coords=p.points, point_labels=p.labels, box=p.box, multimask_output=p.multimask
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
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="sam2.1-hiera-tiny")
    ap.add_argument("--images", type=int, default=8, help="images for the prompted runs")
    ap.add_argument("--auto-images", type=int, default=3, help="images for the automatic runs (0: skip)")
    ap.add_argument("--points-per-side", type=int, default=16)
    ap.add_argument("--no-reference", action="store_true")
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

    t = timed(lambda: plain_loop(samkit.ImagePredictor(model), folder, keys[:n], prompts, tmp / "loop"))
    rows["prompts: plain loop (samkit predictor)"] = {"images": n, "seconds": t}
    if not args.no_reference:
        oracle.setup()
        from sam2.sam2_image_predictor import SAM2ImagePredictor

        ref = SAM2ImagePredictor(oracle.build_reference(args.variant, ckpt))
        with torch.inference_mode():
            t = timed(lambda: plain_loop(ref, folder, keys[:n], prompts, tmp / "loop-ref"))
        rows["prompts: plain loop (reference predictor)"] = {"images": n, "seconds": t}
    s = BatchSettings(model=args.variant, checkpoint=str(ckpt), device="cpu", mode="prompts")
    t = timed(lambda: run_batch(sub, tmp / "batch", s, prompts=pf, model=model, progress=False))
    rows["prompts: samkit batch"] = {"images": n, "seconds": t}
    fast = samkit.load_model(args.variant, checkpoint=ckpt, device="cpu", precision="bf16")
    s = BatchSettings(
        model=args.variant, checkpoint=str(ckpt), device="cpu", mode="prompts", precision="bf16"
    )
    t = timed(lambda: run_batch(sub, tmp / "batch-fast", s, prompts=pf, model=fast, progress=False))
    rows["prompts: samkit batch --fast"] = {"images": n, "seconds": t}

    if args.auto_images:
        m = args.auto_images
        auto_dir = tmp / "auto-photos"
        auto_dir.mkdir()
        for k in keys[:m]:
            (auto_dir / k).symlink_to(folder / k)
        settings = {"points_per_side": args.points_per_side}
        gen = samkit.AutomaticMaskGenerator(model, output_mode="coco_rle", **settings)
        t = timed(lambda: auto_loop(gen, folder, keys[:m], tmp / "auto-loop"))
        rows["auto: plain loop"] = {"images": m, "seconds": t}
        s = BatchSettings(model=args.variant, checkpoint=str(ckpt), device="cpu", mode="auto", auto=settings)
        t = timed(lambda: run_batch(auto_dir, tmp / "auto-batch", s, model=model, progress=False))
        rows["auto: samkit batch"] = {"images": m, "seconds": t}

    for r in rows.values():
        r["images_per_s"] = r["images"] / r["seconds"]
    print(f"{args.variant}, 1500x1000 JPEGs, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'':<44}{'images':>8}{'seconds':>10}{'images/s':>10}")
    for name, r in rows.items():
        print(f"{name:<44}{r['images']:>8}{r['seconds']:>10.2f}{r['images_per_s']:>10.3f}")
    base = rows["prompts: plain loop (samkit predictor)"]["images_per_s"]
    print(
        f"samkit batch vs plain loop (prompts): {rows['prompts: samkit batch']['images_per_s'] / base:.2f}x"
    )
    if args.auto_images:
        ratio = rows["auto: samkit batch"]["images_per_s"] / rows["auto: plain loop"]["images_per_s"]
        print(f"samkit batch vs plain loop (auto): {ratio:.2f}x")
    emit_json({"variant": args.variant, "rows": rows})


if __name__ == "__main__":
    main()
