"""Automatic masks against ground truth: class-agnostic average recall (COCO's AR@100 and AR@1000,
IoU thresholds 0.50:0.05:0.95, masks ranked by predicted IoU, pycocotools) and the mean best IoU of
each ground-truth object over all generated masks, with the time per image."""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .data import ImageSet
from .errors import EvalError

MAX_DETS = (1, 10, 100, 1000)


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    return mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))


def _as_rle(segmentation) -> dict:
    if isinstance(segmentation, dict):  # coco_rle output: counts as str
        counts = segmentation["counts"]
        return {
            "size": list(segmentation["size"]),
            "counts": counts.encode() if isinstance(counts, str) else counts,
        }
    return _rle(np.asarray(segmentation, dtype=bool))


def average_recall(
    gts: list[list[dict]], dets: list[list[tuple[dict, float]]], max_dets: tuple[int, ...] = MAX_DETS
) -> dict[str, float]:
    """Class-agnostic COCO recall of masks. ``gts[i]``: image i's ground-truth RLEs; ``dets[i]``:
    its (RLE, score) masks. Returns ``AR@k`` for each k in ``max_dets`` (area 'all') and
    ``AR@{max} small/medium/large``."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    images, anns, results = [], [], []
    for i, (g, d) in enumerate(zip(gts, dets), start=1):
        h, w = (g[0] if g else d[0][0])["size"] if (g or d) else (1, 1)
        images.append({"id": i, "height": int(h), "width": int(w)})
        for rle in g:
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "segmentation": rle,
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
        for rle, score in d:
            results.append({"image_id": i, "category_id": 1, "segmentation": rle, "score": float(score)})
    if not anns:
        raise EvalError("no ground-truth object to recall")
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "object"}]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        gt.createIndex()
        if not results:
            return {f"AR@{k}": 0.0 for k in max_dets} | {
                f"AR@{max(max_dets)} {a}": 0.0 for a in ("small", "medium", "large")
            }
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iouType="segm")
        ev.params.useCats = 0
        ev.params.maxDets = list(max_dets)
        ev.evaluate()
        ev.accumulate()
    recall = ev.eval["recall"]  # (IoU thresholds, categories, area ranges, max dets)

    def mean(area: int, m: int) -> float:
        r = recall[:, :, area, m]
        r = r[r > -1]
        return float(r.mean()) if r.size else float("nan")

    out = {f"AR@{k}": mean(0, m) for m, k in enumerate(max_dets)}
    for a, name in ((1, "small"), (2, "medium"), (3, "large")):
        out[f"AR@{max(max_dets)} {name}"] = mean(a, len(max_dets) - 1)
    return out


def best_ious(gt: list[dict], det: list[dict]) -> np.ndarray:
    """For each ground-truth RLE, its highest IoU with any detected RLE (0 with none)."""
    from pycocotools import mask as mask_utils

    if not gt:
        return np.zeros(0)
    if not det:
        return np.zeros(len(gt))
    ious = np.asarray(mask_utils.iou(det, gt, [0] * len(gt))).reshape(len(det), len(gt))
    return ious.max(axis=0)


@dataclass
class AutoResult:
    """Recall of the automatic masks over a dataset."""

    recall: dict[str, float]
    mean_best_iou: float
    images: int
    objects: int
    masks_per_image: float
    seconds_per_image: float
    per_image: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, per_image: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            **self.recall,
            "mean best IoU": self.mean_best_iou,
            "images": self.images,
            "objects": self.objects,
            "masks_per_image": self.masks_per_image,
            "seconds_per_image": self.seconds_per_image,
        }
        if per_image:
            d["per_image"] = self.per_image
        return d


def auto(
    model,
    data,
    *,
    max_images: int | None = None,
    progress: bool = False,
    **generator_settings: Any,
) -> AutoResult:
    """Evaluate the automatic mask generator's recall on a dataset of images.

    Args:
        model: a samkit model (:func:`samkit.load_model`) or an
            :class:`~samkit.AutomaticMaskGenerator`.
        data: ``coco:ANNOTATIONS.json:IMAGE_DIR``, ``folder:IMAGE_DIR:MASK_DIR`` or an
            :class:`ImageSet`.
        max_images: the first images only.
        progress: a progress bar over images.
        generator_settings: :class:`~samkit.AutomaticMaskGenerator` arguments (``points_per_side``,
            ``pred_iou_thresh``, ``fast``, ...) when ``model`` is a model.
    """
    from tqdm.auto import tqdm

    from ..predictors import AutomaticMaskGenerator

    if isinstance(model, AutomaticMaskGenerator):
        if generator_settings:
            raise TypeError("generator settings go to the AutomaticMaskGenerator, not to auto()")
        generator = model
    else:
        generator = AutomaticMaskGenerator(model, output_mode="coco_rle", **generator_settings)
    images = data if isinstance(data, ImageSet) else ImageSet(data, max_images=max_images)
    gts, dets, per_image = [], [], []
    best: list[np.ndarray] = []
    for item in tqdm(images, total=len(images), desc="samkit eval auto", unit="img", disable=not progress):
        t = time.perf_counter()
        anns = generator.generate(item.image)
        seconds = time.perf_counter() - t
        g = [_rle(m) for m in item.masks]
        d = [(_as_rle(a["segmentation"]), float(a["predicted_iou"])) for a in anns]
        gts.append(g)
        dets.append(d)
        b = best_ious(g, [rle for rle, _ in d])
        best.append(b)
        per_image.append(
            {
                "image": item.name,
                "objects": len(g),
                "masks": len(d),
                "seconds": seconds,
                "mean_best_iou": float(b.mean()),
            }
        )
    recall = average_recall(gts, dets)
    all_best = np.concatenate(best)
    return AutoResult(
        recall=recall,
        mean_best_iou=float(all_best.mean()),
        images=len(per_image),
        objects=int(all_best.size),
        masks_per_image=float(np.mean([p["masks"] for p in per_image])),
        seconds_per_image=float(np.mean([p["seconds"] for p in per_image])),
        per_image=per_image,
    )
