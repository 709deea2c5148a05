"""Does a prompt-free head learn, and what does it cost? Generated photos of two shape classes (discs
and rectangles, with triangles as distractors) on textured backgrounds.

1. Train a head on ``--train`` images with a perturbed official-layout checkpoint (there are no
   pretrained weights on the build machines), and report held-out per-class IoU against an untrained
   head and against the automatic mask generator's best-matching mask per object, plus the time of
   the embedding pass and of the epochs.
2. Images per second of ``samkit batch --head`` against ``samkit batch --auto`` and plain encoding, in
   the same run.

    python3 benchmarks/bench_heads.py [--model sam2.1-hiera-tiny] [--size 512] [--train 200] [--test 40]
        [--epochs 20] [--kind tokens] [--speed-images 16] [--out benchmarks/results/heads]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def class_iou(masks_per_image, labels_per_image, k):
    inter = union = 0
    for masks, labels in zip(masks_per_image, labels_per_image):
        p, t = masks[k - 1], labels == k
        inter += int((p & t).sum())
        union += int((p | t).sum())
    return inter / union if union else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="sam2.1-hiera-tiny")
    ap.add_argument("--size", type=int, default=512, help="model resolution (a multiple of 32)")
    ap.add_argument("--image-size", type=int, default=256, help="generated photos' side")
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--test", type=int, default=40)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--kind", default="tokens", choices=("tokens", "dense"))
    ap.add_argument("--augment", default="", help="fixed augmentations, e.g. hflip,vflip")
    ap.add_argument("--cache", default=None, help="embedding cache folder (default: a temporary one)")
    ap.add_argument("--speed-images", type=int, default=16)
    ap.add_argument("--points-per-side", type=int, default=16, help="automatic masks' grid")
    ap.add_argument("--out", default=None, help="folder for the JSON result")
    args = ap.parse_args()

    import oracle
    import samkit
    from samkit.batch import BatchSettings, run_batch
    from samkit.configs import get_config
    from samkit.eval.auto import best_ious
    from samkit.heads import ClassImages, HeadSettings, PromptFreeHead, train_head
    from samkit.train.synthetic import write_coco_shapes

    torch.manual_seed(0)
    samkit.tune_allocator()
    oracle.setup()
    ckpt = oracle.checkpoint(args.model)
    cfg = dataclasses.replace(get_config(args.model), image_size=args.size)
    model = samkit.load_model(cfg, checkpoint=ckpt, device="cpu")
    classes = ["disc", "rect"]
    work = Path(tempfile.mkdtemp(prefix="bench_heads_"))
    tr_ann, tr_img = write_coco_shapes(args.train, work / "train", size=args.image_size, seed=0)
    te_ann, te_img = write_coco_shapes(args.test, work / "test", size=args.image_size, seed=1)
    augment = tuple(a for a in args.augment.split(",") if a)
    settings = HeadSettings(kind=args.kind, epochs=args.epochs, lr=args.lr, val_fraction=0.1, augment=augment)
    r = train_head(
        model,
        f"coco:{tr_ann}:{tr_img}",
        classes,
        work / "head.pt",
        settings,
        cache_dir=args.cache or work / "cache",
        progress=True,
    )
    head = r.head
    untrained = PromptFreeHead.from_model(model, classes, args.kind)

    test = ClassImages(f"coco:{te_ann}:{te_img}", classes)
    items = [test.load(i) for i in range(len(test))]
    pred = samkit.ImagePredictor(model)
    trained_masks, untrained_masks, labels = [], [], []
    for it in items:
        pred.set_image(it.image)
        trained_masks.append(head.predict(pred)[0])
        untrained_masks.append(untrained.predict(pred)[0])
        labels.append(it.labels)
    result = {
        "model": args.model,
        "size": args.size,
        "kind": args.kind,
        "train_images": args.train,
        "test_images": len(items),
        "epochs": args.epochs,
        "augment": list(augment),
        "embed_seconds": r.embed_seconds,
        "train_seconds": r.train_seconds,
        "encoded": r.encoded,
        "best_val_miou": r.best_val_miou,
        "history": r.history,
        "iou": {},
    }
    # the automatic mask generator's best mask for each object (it does not know the classes: the
    # matching picks, per object, whichever of its masks overlaps most)
    from pycocotools import mask as mask_utils

    # no score filters: with perturbed weights the default thresholds (0.8, 0.95) keep no mask at all
    gen = samkit.AutomaticMaskGenerator(
        model,
        points_per_side=args.points_per_side,
        output_mode="coco_rle",
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
    )
    doc = json.loads(Path(te_ann).read_text())
    by_image = {}
    for a in doc["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    amg_best = {c: [] for c in classes}
    head_object = {c: [] for c in classes}
    t = time.perf_counter()
    for im in doc["images"]:
        anns = by_image.get(im["id"], [])
        if not anns:
            continue
        from PIL import Image

        rgb = np.array(Image.open(te_img / im["file_name"]).convert("RGB"))
        masks = gen.generate(rgb)
        dets = [
            {"size": m["segmentation"]["size"], "counts": m["segmentation"]["counts"].encode()} for m in masks
        ]
        gts = [
            {"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()} for a in anns
        ]
        for a, b in zip(anns, best_ious(gts, dets)):
            amg_best[classes[a["category_id"] - 1]].append(float(b))
        pred.set_image(rgb)
        hm = head.predict(pred)[0]
        for a, g in zip(anns, gts):
            obj = mask_utils.decode(g).astype(bool)
            cm = hm[a["category_id"] - 1]
            # the head's class mask cut to the object's neighbourhood: its connected part touching it
            from scipy import ndimage

            lab, _ = ndimage.label(cm)
            ids = np.unique(lab[obj & cm])
            part = np.isin(lab, ids[ids > 0])
            union = (part | obj).sum()
            head_object[classes[a["category_id"] - 1]].append(
                float((part & obj).sum() / union) if union else 0.0
            )
    amg_seconds = time.perf_counter() - t
    for k, c in enumerate(classes, start=1):
        result["iou"][c] = {
            "trained head (class IoU)": class_iou(trained_masks, labels, k),
            "untrained head (class IoU)": class_iou(untrained_masks, labels, k),
            "trained head (per-object IoU)": float(np.mean(head_object[c])) if head_object[c] else None,
            "automatic masks, best match (per-object IoU)": float(np.mean(amg_best[c]))
            if amg_best[c]
            else None,
        }
    result["amg_seconds_per_image"] = amg_seconds / max(len(doc["images"]), 1)

    # speed: the batch job's engine on the same photos, one process, head vs automatic vs encoding
    photos = sorted(te_img.glob("*.jpg"))[: args.speed_images]
    speed = {}
    head_file = work / "head.pt"
    for mode in ("head", "auto"):
        s = BatchSettings(
            model=args.model,
            mode=mode,
            head=str(head_file) if mode == "head" else None,
            auto={"points_per_side": args.points_per_side} if mode == "auto" else {},
        )
        summary = run_batch(
            [str(p) for p in photos], work / f"batch-{mode}", s, processes=1, progress=False, model=model
        )
        speed[f"batch --{mode}"] = summary.images_per_second
    from samkit import transforms as T

    t = time.perf_counter()
    with torch.inference_mode():
        for p in photos:
            from PIL import Image

            model.encode_images(
                T.preprocess_images([np.array(Image.open(p).convert("RGB"))], args.size, "cpu")
            )
    speed["plain encoding"] = len(photos) / (time.perf_counter() - t)
    result["images_per_second"] = speed

    print(
        f"\n{args.model} at {args.size} px, {args.kind} head, {args.train} training photos, {args.epochs} epochs"
    )
    print(f"embedding pass {r.embed_seconds:.1f} s ({r.encoded} encodes), epochs {r.train_seconds:.1f} s")
    for c, row in result["iou"].items():
        print(f"  {c:5s} " + "  ".join(f"{k}: {v:.3f}" for k, v in row.items() if v is not None))
    print("images/s: " + ", ".join(f"{k} {v:.2f}" for k, v in speed.items()))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result, indent=2))
    print("JSON " + json.dumps({k: v for k, v in result.items() if k != "history"}))


if __name__ == "__main__":
    main()
