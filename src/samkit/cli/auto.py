"""``samkit auto``: automatic masks for everything in one image."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ._common import CLIError, add_generator_args, add_model_args, generator_kwargs, load


def add_parser(sub) -> argparse.ArgumentParser:
    au = sub.add_parser(
        "auto",
        help="segment everything in an image (automatic masks)",
        description="Generate masks for everything in an image from a grid of clicks; writes COCO-format "
        "JSON with RLE masks (readable by pycocotools) and an overlay with every mask in its own colour.",
        epilog="example: samkit auto photo.jpg --out annotations.json --overlay everything.png",
    )
    au.add_argument("image", help="image file")
    au.add_argument("--out", default=None, help="COCO JSON file to write")
    au.add_argument("--overlay", default=None, help="PNG with every mask drawn")
    add_generator_args(au)
    au.add_argument("--json", action="store_true", help="print a summary as JSON")
    au.add_argument("--quiet", action="store_true", help="no progress bar")
    add_model_args(au)
    return au


def run(args: argparse.Namespace) -> int:
    import time

    from .. import coco
    from .._files import atomic_write
    from ..predictors import AutomaticMaskGenerator
    from ..transforms import load_image
    from ..visualize import overlay_masks

    if not (args.out or args.overlay or args.json):
        raise CLIError("nothing to write: pass --out, --overlay and/or --json")
    image = load_image(args.image)
    model = load(args)
    gen = AutomaticMaskGenerator(
        model,
        **generator_kwargs(args),
        output_mode="coco_rle",
        fast=args.fast,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    t = time.perf_counter()
    anns = gen.generate(image)
    seconds = time.perf_counter() - t
    h, w = image.shape[:2]
    written = []
    if args.out:
        doc = coco.single_image(
            anns, Path(args.image).name, w, h, f"samkit automatic masks ({model.cfg.name})"
        )
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda p: p.write_text(json.dumps(doc)))
        written.append(str(out))
    if args.overlay:
        from .. import rle

        order = sorted(range(len(anns)), key=lambda i: -anns[i]["area"])  # small masks drawn last, on top
        ov = Path(args.overlay)
        ov.parent.mkdir(parents=True, exist_ok=True)
        overlay_masks(image, [rle.decode(anns[i]["segmentation"]) for i in order], alpha=0.45).save(ov)
        written.append(str(ov))
    summary = {
        "image": str(args.image),
        "width": w,
        "height": h,
        "model": model.cfg.name,
        "masks": len(anns),
        "seconds": round(seconds, 3),
        "stages": {k: round(v, 3) for k, v in gen.timings.items()},
        "files": written,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(anns)} masks in {seconds:.1f} s" + (f"; wrote {', '.join(written)}" if written else ""))
    return 0
