"""Meta's image predictor notebook (``notebooks/image_predictor_example.ipynb``), step by step, on samkit.

The steps are the notebook's, in its order and with its prompts: one click (three masks, sorted by
score), a second click fed with the previous low-res logits, a negative click, a box, a box with a
negative click, four boxes at once, then two images in one batch with boxes and with clicks
(``set_image_batch`` / ``predict_batch``). :func:`notebook_steps` is written against the reference's
API and runs unchanged on either package; only the imports and the model-building line differ from
the notebook::

    from samkit import SAM2ImagePredictor, build_sam2      # was: from sam2... import ...
    predictor = SAM2ImagePredictor(build_sam2(model_cfg, sam2_checkpoint, device=device))

Run it (the official tiny SAM 2.1 weights are downloaded once unless ``--checkpoint`` is given)::

    python3 examples/image_predictor.py --images ../shared/data/images --out /tmp/image-steps

It prints each step's scores and mask areas and, with ``--out``, saves the masks drawn over the images.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
from PIL import Image

# the notebook's prompts, in truck.jpg (1800x1200) and groceries.jpg pixels
TRUCK_CLICK = [[500, 375]]
TRUCK_SECOND_CLICK = [[500, 375], [1125, 625]]
TRUCK_BOX = [425, 600, 700, 875]
TRUCK_BOX_NEGATIVE_CLICK = [[575, 750]]
TRUCK_BOXES = [[75, 275, 1725, 850], [425, 600, 700, 875], [1375, 550, 1650, 800], [1240, 675, 1400, 750]]
GROCERIES_BOXES = [[450, 170, 520, 350], [350, 190, 450, 350], [500, 170, 580, 350], [580, 170, 640, 350]]
TRUCK_BATCH_CLICKS = [[[500, 375]], [[650, 750]]]
GROCERIES_BATCH_CLICKS = [[[400, 300]], [[630, 300]]]


def notebook_steps(predictor, image: np.ndarray, image2: np.ndarray, scale: float = 1.0) -> dict[str, dict]:
    """Run the notebook's cells with ``predictor`` (samkit's or the reference's SAM2ImagePredictor) on
    the truck (``image``) and the groceries (``image2``); ``scale``: the images' size relative to the
    notebook's (the prompts are scaled with it). Returns each step's outputs by name: ``masks``,
    ``scores``, ``logits`` and the prompts (batched steps: lists with one array per image)."""
    steps: dict[str, dict] = {}

    def px(coords) -> np.ndarray:
        return np.array(coords) * scale

    predictor.set_image(image)
    embed = predictor._features["image_embed"]  # the notebook prints its shape
    steps["embedding"] = {"shape": tuple(embed.shape), "per_image_shape": tuple(embed[-1].shape)}

    # a single click: three masks, sorted by predicted quality
    input_point, input_label = px(TRUCK_CLICK), np.array([1])
    masks, scores, logits = predictor.predict(
        point_coords=input_point, point_labels=input_label, multimask_output=True
    )
    order = np.argsort(scores)[::-1]
    masks, scores, logits = masks[order], scores[order], logits[order]
    steps["one click"] = dict(
        masks=masks, scores=scores, logits=logits, points=input_point, labels=input_label
    )

    # a second click, with the best mask's low-res logits as the mask input
    input_point, input_label = px(TRUCK_SECOND_CLICK), np.array([1, 1])
    mask_input = logits[np.argmax(scores), :, :]
    masks, scores, logits2 = predictor.predict(
        point_coords=input_point,
        point_labels=input_label,
        mask_input=mask_input[None, :, :],
        multimask_output=False,
    )
    steps["two clicks"] = dict(
        masks=masks, scores=scores, logits=logits2, points=input_point, labels=input_label
    )

    # the second click as a negative one
    input_label = np.array([1, 0])
    masks, scores, logits2 = predictor.predict(
        point_coords=input_point,
        point_labels=input_label,
        mask_input=mask_input[None, :, :],
        multimask_output=False,
    )
    steps["negative click"] = dict(
        masks=masks, scores=scores, logits=logits2, points=input_point, labels=input_label
    )

    # a box
    input_box = px(TRUCK_BOX)
    masks, scores, logits2 = predictor.predict(
        point_coords=None, point_labels=None, box=input_box[None, :], multimask_output=False
    )
    steps["box"] = dict(masks=masks, scores=scores, logits=logits2, boxes=[input_box])

    # a box and a negative click
    input_point, input_label = px(TRUCK_BOX_NEGATIVE_CLICK), np.array([0])
    masks, scores, logits2 = predictor.predict(
        point_coords=input_point, point_labels=input_label, box=input_box, multimask_output=False
    )
    steps["box and click"] = dict(
        masks=masks, scores=scores, logits=logits2, boxes=[input_box], points=input_point, labels=input_label
    )

    # four boxes in one call: (4, 1, H, W)
    input_boxes = px(TRUCK_BOXES)
    masks, scores, logits2 = predictor.predict(
        point_coords=None, point_labels=None, box=input_boxes, multimask_output=False
    )
    steps["batched boxes"] = dict(masks=masks, scores=scores, logits=logits2, boxes=input_boxes)

    # end-to-end batched inference: two images, boxes for each
    img_batch = [image, image2]
    boxes_batch = [px(TRUCK_BOXES), px(GROCERIES_BOXES)]
    predictor.set_image_batch(img_batch)
    masks_batch, scores_batch, _ = predictor.predict_batch(
        None, None, box_batch=boxes_batch, multimask_output=False
    )
    steps["image batch, boxes"] = dict(masks=list(masks_batch), scores=list(scores_batch), boxes=boxes_batch)

    # ... and one click per object, three masks each; keep each object's best
    pts_batch = [px(TRUCK_BATCH_CLICKS), px(GROCERIES_BATCH_CLICKS)]
    labels_batch = [np.array([[1], [1]]), np.array([[1], [1]])]
    masks_batch, scores_batch, _ = predictor.predict_batch(
        pts_batch, labels_batch, box_batch=None, multimask_output=True
    )
    best_masks = [
        masks[range(len(masks)), np.argmax(scores, axis=-1)]
        for masks, scores in zip(masks_batch, scores_batch)
    ]
    steps["image batch, clicks"] = dict(
        masks=list(masks_batch), scores=list(scores_batch), best_masks=best_masks, points=pts_batch
    )
    return steps


def _save(steps: dict, image: np.ndarray, image2: np.ndarray, out: Path) -> None:
    """Each step's masks drawn over its image(s) with the prompts, as the notebook shows them."""
    from samkit.visualize import overlay_masks

    out.mkdir(parents=True, exist_ok=True)
    for name, s in steps.items():
        if "masks" not in s:
            continue
        fname = name.replace(" ", "_").replace(",", "")
        if name.startswith("image batch"):
            # per image: the masks of its boxes, or the best of each click's three
            chosen = s.get("best_masks", [m[:, 0] for m in s["masks"]])
            boxes = s.get("boxes", [None, None])
            for i, (im, masks) in enumerate(zip((image, image2), chosen)):
                drawn = None if boxes[i] is None else np.asarray(boxes[i]).tolist()
                overlay_masks(im, list(masks.astype(bool)), boxes=drawn).save(out / f"{fname}_{i}.png")
            continue
        masks = s["masks"].reshape(-1, *s["masks"].shape[-2:]).astype(bool)
        points = s.get("points")
        overlay_masks(
            image,
            list(masks) if name == "batched boxes" else [masks[0]],  # the best (first) mask of a click
            points=None if points is None else points.tolist(),
            labels=None if points is None else s["labels"].tolist(),
            boxes=np.asarray(s.get("boxes", [])).tolist(),
        ).save(out / f"{fname}.png")


def main(argv: list[str] | None = None) -> dict:
    import samkit
    from samkit import SAM2ImagePredictor, build_sam2
    from samkit.build_sam import config_from_name

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--config", default="configs/sam2.1/sam2.1_hiera_t.yaml", help="Meta config name or samkit model"
    )
    p.add_argument("--checkpoint", default=None, help="official .pt (default: download the config's weights)")
    p.add_argument(
        "--images", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "images")
    )
    p.add_argument("--device", default=None, help="cpu, cuda, mps (default: CUDA when present)")
    p.add_argument(
        "--image-size", type=int, default=None, help="model resolution (default 1024; a multiple of 32)"
    )
    p.add_argument("--scale", type=float, default=1.0, help="resize the images (and the prompts) by this")
    p.add_argument("--out", default=None, help="folder for the pictures of each step")
    args = p.parse_args(argv)

    device = args.device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    checkpoint = args.checkpoint or samkit.download_checkpoint(config_from_name(args.config).name)
    overrides = [f"++model.image_size={args.image_size}"] if args.image_size else []
    sam2_model = build_sam2(args.config, str(checkpoint), device=device, hydra_overrides_extra=overrides)
    predictor = SAM2ImagePredictor(sam2_model)

    def read(name: str) -> np.ndarray:
        im = Image.open(os.path.join(args.images, name)).convert("RGB")
        if args.scale != 1:
            im = im.resize(
                (round(im.width * args.scale), round(im.height * args.scale)), Image.Resampling.BILINEAR
            )
        return np.array(im)

    image, image2 = read("truck.jpg"), read("groceries.jpg")
    steps = notebook_steps(predictor, image, image2, scale=args.scale)
    for name, s in steps.items():
        if "scores" not in s:
            print(f"{name}: {s}")
            continue
        per_image = isinstance(s["scores"], list)
        scores = [
            [round(float(v), 3) for v in np.ravel(x)] for x in (s["scores"] if per_image else [s["scores"]])
        ]
        areas = [
            [int(a) for a in m.reshape(-1, *m.shape[-2:]).sum(axis=(1, 2))]
            for m in (s["masks"] if per_image else [s["masks"]])
        ]
        print(f"{name}: scores {scores}, mask pixels {areas}")
    if args.out:
        _save(steps, image, image2, Path(args.out))
        print(f"pictures in {args.out}")
    return steps


if __name__ == "__main__":
    main()
