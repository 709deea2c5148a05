"""``samkit segment``: prompted masks for one image."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..prompts import Prompt
from ._common import CLIError, add_model_args, box_arg, load, point_arg


def add_parser(sub) -> argparse.ArgumentParser:
    seg = sub.add_parser(
        "segment",
        help="segment one image from point/box prompts",
        description="Predict a mask for one image from point and box prompts and write it as PNG.",
        epilog="example: samkit segment photo.jpg --point 500,375 --point 300,200:0 --box 10,10,400,400 "
        "--out mask.png --overlay overlay.png",
    )
    seg.add_argument("image", help="image file (JPEG, PNG, ...)")
    seg.add_argument(
        "--point",
        action="append",
        type=point_arg,
        default=[],
        metavar="X,Y[:LABEL]",
        help="a click in pixels; LABEL 1 = object (default), 0 = background. Repeatable",
    )
    seg.add_argument(
        "--box", type=box_arg, default=None, metavar="X0,Y0,X1,Y1", help="a box around the object"
    )
    seg.add_argument(
        "--out", default=None, help="mask PNG to write (with --multimask: NAME_0.png, NAME_1.png, ...)"
    )
    seg.add_argument("--overlay", default=None, help="PNG of the image with the mask(s) and prompts drawn")
    seg.add_argument("--multimask", action="store_true", help="write all three candidate masks")
    seg.add_argument(
        "--json", action="store_true", help="print scores, areas and boxes (COCO x,y,w,h) as JSON"
    )
    seg.add_argument("--threshold", type=float, default=0.0, help="mask logit threshold (default 0)")
    seg.add_argument("--max-hole-area", type=float, default=0.0, help="fill holes up to this low-res area")
    seg.add_argument(
        "--max-sprinkle-area", type=float, default=0.0, help="remove specks up to this low-res area"
    )
    add_model_args(seg)
    return seg


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..predictors import ImagePredictor
    from ..transforms import load_image
    from ..visualize import mask_stats, mask_to_png, overlay_masks

    if not args.point and args.box is None:
        raise CLIError("give at least one --point X,Y or a --box X0,Y0,X1,Y1")
    if not (args.out or args.overlay or args.json):
        raise CLIError("nothing to write: pass --out, --overlay and/or --json")
    image = load_image(args.image)
    h, w = image.shape[:2]
    prompt = Prompt.from_fields(
        [[x, y] for x, y, _ in args.point] or None,
        [lab for _, _, lab in args.point] or None,
        None if args.box is None else list(args.box),
    ).check_bounds(w, h)

    model = load(args)
    predictor = ImagePredictor(
        model,
        mask_threshold=args.threshold,
        max_hole_area=args.max_hole_area,
        max_sprinkle_area=args.max_sprinkle_area,
    )
    predictor.set_image(image)
    multimask = args.multimask or prompt.multimask
    masks, scores, _ = predictor.predict(
        point_coords=prompt.point_coords,
        point_labels=prompt.point_labels,
        box=prompt.box,
        multimask_output=multimask,
    )
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    keep = order if args.multimask else order[:1]

    written = []
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.multimask:
            for rank, i in enumerate(keep):
                path = out.with_name(f"{out.stem}_{rank}{out.suffix or '.png'}")
                mask_to_png(masks[i]).save(path)
                written.append(str(path))
        else:
            mask_to_png(masks[keep[0]]).save(out)
            written.append(str(out))
    if args.overlay:
        ov = Path(args.overlay)
        ov.parent.mkdir(parents=True, exist_ok=True)
        overlay_masks(
            image,
            [masks[i] for i in keep],
            points=prompt.point_coords,
            labels=prompt.point_labels,
            boxes=[prompt.box] if prompt.box else None,
        ).save(ov)
        written.append(str(ov))
    if args.json:
        result = {
            "image": str(args.image),
            "width": w,
            "height": h,
            "model": model.cfg.name,
            "masks": [
                {"rank": r, "score": float(scores[i]), **mask_stats(masks[i])} for r, i in enumerate(keep)
            ],
            "files": written,
        }
        print(json.dumps(result, indent=2))
    else:
        best = keep[0]
        print(
            f"mask score {scores[best]:.3f}, area {int(masks[best].sum())} px"
            + (f"; wrote {', '.join(written)}" if written else "")
        )
    return 0
