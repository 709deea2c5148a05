"""``samkit segment``: prompted masks for one image."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..prompts import Prompt
from ._common import (
    CLIError,
    add_model_args,
    add_text_args,
    box_arg,
    load,
    point_arg,
    reject_text_args_without_text,
    text_predictor,
)


def add_parser(sub) -> argparse.ArgumentParser:
    seg = sub.add_parser(
        "segment",
        help="segment one image from clicks or a box (or --text words, or a prompt-free --head)",
        description="Predict a mask for one image from point and box prompts and write it as PNG; "
        "with --head (samkit train-head), the head's classes with no prompt.",
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
    seg.add_argument(
        "--overlay",
        default=None,
        help="PNG of the image with the mask and prompts drawn (with --multimask: NAME_0.png, NAME_1.png, ...)",
    )
    seg.add_argument("--multimask", action="store_true", help="write all three candidate masks")
    seg.add_argument(
        "--json", action="store_true", help="print scores, areas and boxes (COCO x,y,w,h) as JSON"
    )
    seg.add_argument(
        "--head", default=None, help="a prompt-free head (samkit train-head): its classes' masks, no prompt"
    )
    seg.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=None,
        metavar="NAME",
        help="with --head: only this class (repeatable; default all)",
    )
    seg.add_argument(
        "--instances", action="store_true", help="with --head: one object per connected component"
    )
    seg.add_argument(
        "--coco",
        default=None,
        help="with --head or --text: write COCO annotations (class or phrase = category) here",
    )
    seg.add_argument(
        "--text",
        default=None,
        help="segment what these words name, phrases separated by '.', e.g. 'truck . person' (needs samkit[text]); "
        "--out is then a folder of mask PNGs",
    )
    add_text_args(seg)
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

    if args.head and args.text is not None:
        raise CLIError("give --head or --text, not both")
    reject_text_args_without_text(args)
    if args.head:
        return _run_head(args)
    if args.text is not None:
        return _run_text(args)
    for flag, value in (("--class", args.classes), ("--instances", args.instances), ("--coco", args.coco)):
        if value:
            raise CLIError(f"{flag} goes with --head" + (" or --text" if flag == "--coco" else ""))
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
        # one picture per candidate (NAME_0.png best, ...): three masks drawn over each other hide
        # each other
        for rank, i in enumerate(keep):
            path = ov.with_name(f"{ov.stem}_{rank}{ov.suffix or '.png'}") if args.multimask else ov
            overlay_masks(
                image,
                [masks[i]],
                points=prompt.point_coords,
                labels=prompt.point_labels,
                boxes=[prompt.box] if prompt.box else None,
            ).save(path)
            written.append(str(path))
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


def _run_head(args: argparse.Namespace) -> int:
    """``segment --head``: the head's classes in one image, no prompt."""
    import sys

    import numpy as np

    from .. import coco
    from .._files import atomic_write
    from ..eval.report import file_sha256
    from ..heads import HeadError, PromptFreeHead
    from ..heads.model import head_annotations
    from ..predictors import ImagePredictor
    from ..transforms import load_image
    from ..visualize import mask_to_png, overlay_masks

    if args.point or args.box is not None or args.multimask:
        raise CLIError("--head segments with no prompt: leave out --point, --box and --multimask")
    if not (args.out or args.overlay or args.json or args.coco):
        raise CLIError("nothing to write: pass --out, --overlay, --coco and/or --json")
    try:
        head = PromptFreeHead.load(args.head)
        wanted = (
            [head.class_index(c) for c in args.classes] if args.classes else list(range(len(head.classes)))
        )
        image = load_image(args.image)
        if args.model is None:
            args.model = head.variant
        elif _variant_name(args.model) != head.variant:
            raise HeadError(
                f"{args.head} was trained on {head.variant}, not {args.model}: use --model {head.variant}"
            )
        model = load(args)
        head.check_model(model)
    except HeadError as e:
        raise CLIError(str(e)) from None
    if args.checkpoint and head.checkpoint_sha256 and file_sha256(args.checkpoint) != head.checkpoint_sha256:
        print(
            f"samkit: note: {args.head} was trained with another checkpoint than {args.checkpoint}",
            file=sys.stderr,
        )
    head = head.to(next(model.parameters()).device)
    predictor = ImagePredictor(model)
    predictor.set_image(image)
    masks, scores = head.predict(predictor)
    masks, scores = masks[wanted], scores[wanted]
    names = [head.classes[k] for k in wanted]
    h, w = image.shape[:2]
    written = []
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if len(wanted) == 1:
            img = mask_to_png(masks[0])
        else:  # a class map: 0 background, i + 1 for the i-th class written
            from PIL import Image

            labels = np.zeros((h, w), np.uint8)
            for i, m in enumerate(masks):
                labels[m] = i + 1
            img = Image.fromarray(labels)
        atomic_write(out, lambda tmp: img.save(tmp, format="PNG"))
        written.append(str(out))
    if args.overlay:
        ov = Path(args.overlay)
        ov.parent.mkdir(parents=True, exist_ok=True)
        overlay_masks(image, list(masks)).save(ov)
        written.append(str(ov))
    anns = head_annotations(masks, scores, names, instances=args.instances)
    if args.coco:
        doc = coco.single_image(
            anns, Path(args.image).name, w, h, f"samkit head {Path(args.head).name} ({model.cfg.name})", names
        )
        for a in doc["annotations"]:
            a.pop("category", None)
        path = Path(args.coco)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(doc)))
        written.append(str(path))
    if args.json:
        result = {
            "image": str(args.image),
            "width": w,
            "height": h,
            "model": model.cfg.name,
            "head": str(args.head),
            "classes": [
                {"class": n, "score": float(s), "area": int(m.sum())} for n, s, m in zip(names, scores, masks)
            ],
            "objects": [{k: a[k] for k in ("category", "score", "area", "bbox")} for a in anns],
            "files": written,
        }
        print(json.dumps(result, indent=2))
    else:
        found = ", ".join(f"{n} {int(m.sum())} px" for n, m in zip(names, masks))
        print(f"{found}; {len(anns)} object(s)" + (f"; wrote {', '.join(written)}" if written else ""))
    return 0


def _variant_name(name: str) -> str:
    from ..checkpoints import resolve_name

    try:
        return resolve_name(name)
    except (KeyError, ValueError):
        return name


def _run_text(args: argparse.Namespace) -> int:
    """``segment --text``: detect what the words name, one box prompt per detection."""
    from .. import coco
    from .._files import atomic_write
    from ..transforms import load_image
    from ..visualize import mask_to_png, overlay_masks

    if args.point or args.box is not None or args.multimask:
        raise CLIError("--text is the prompt: leave out --point, --box and --multimask")
    if not (args.out or args.overlay or args.json or args.coco):
        raise CLIError("nothing to write: pass --out FOLDER, --overlay, --coco and/or --json")
    image = load_image(args.image)
    predictor = text_predictor(args, load)
    from ..text import TextError

    try:
        result = predictor.predict(image, args.text)
    except TextError as e:
        raise CLIError(str(e)) from None
    h, w = image.shape[:2]
    written = []
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        for k, (m, lab) in enumerate(zip(result.masks, result.labels)):
            path = out / f"{k:03d}_{'_'.join(lab.split())}.png"
            atomic_write(path, lambda tmp, m=m: mask_to_png(m).save(tmp, format="PNG"))
            written.append(str(path))
    if args.overlay:
        ov = Path(args.overlay)
        ov.parent.mkdir(parents=True, exist_ok=True)
        labels = [f"{lab} {s:.2f}" for lab, s in zip(result.labels, result.scores)]
        overlay_masks(image, list(result.masks), boxes=list(result.boxes), box_labels=labels).save(ov)
        written.append(str(ov))
    anns = result.annotations()
    if args.coco:
        doc = coco.single_image(
            [{k: v for k, v in a.items() if k != "category"} for a in anns],
            Path(args.image).name,
            w,
            h,
            f"samkit text prompt {args.text!r} ({predictor.predictor.model.cfg.name}, {predictor.detector.name})",
            result.phrases,
        )
        path = Path(args.coco)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(doc)))
        written.append(str(path))
    if args.json:
        objects = [
            {k: a[k] for k in ("category", "score", "predicted_iou", "box", "area", "bbox")} for a in anns
        ]
        doc = {
            "image": str(args.image),
            "width": w,
            "height": h,
            "text": args.text,
            "phrases": result.phrases,
            "detector": predictor.detector.name,
            "objects": objects,
            "files": written,
        }
        print(json.dumps(doc, indent=2))
    elif len(result):
        counts: dict[str, int] = {}
        for lab in result.labels:
            counts[lab] = counts.get(lab, 0) + 1
        found = ", ".join(f"{n} {lab}" for lab, n in counts.items())
        print(f"found {found}" + (f"; wrote {', '.join(written)}" if written else ""))
    else:
        print(f"nothing found for {args.text!r} (box threshold {predictor.box_threshold})")
    return 0
