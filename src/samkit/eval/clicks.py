"""Interactive image segmentation with simulated clicks: mIoU after k clicks and the number of clicks
to reach 85% / 90% IoU (NoC), the protocol of RITM and SimpleClick, plus a box prompt alone.

Per object:

1. The first click is positive, at the object pixel farthest from its boundary (Euclidean distance
   transform; the image border counts as boundary).
2. Each next click goes to the error pixel farthest from the boundary of its error region: over the
   missed pixels (a positive click) and the false alarms (a negative click), whichever distance is
   larger (ties: negative). With no error left the mask is kept and no click added.
3. Every prediction gets all clicks so far and the previous low-resolution logits as its mask
   input. The first click asks for three candidates and keeps the one with the highest predicted
   IoU (a single click is ambiguous); later clicks ask for one mask.

NoC@t is the first k whose IoU reaches t, ``max_clicks`` when none does. Everything is deterministic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .data import ImageSet
from .errors import EvalError

NOC_THRESHOLDS = (0.85, 0.90)


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two binary masks (0 when both are empty)."""
    union = int(np.count_nonzero(pred | gt))
    return int(np.count_nonzero(pred & gt)) / union if union else 0.0


def next_click(gt: np.ndarray, pred: np.ndarray | None) -> tuple[tuple[int, int], int] | None:
    """The protocol's next click ``((x, y), label)`` for ground truth ``gt`` and the current mask
    ``pred`` (None before the first click); None when ``pred`` equals ``gt``."""
    from ..train.prompting import click_center

    if pred is not None and np.array_equal(pred, gt):
        return None
    p = None if pred is None else torch.from_numpy(np.ascontiguousarray(pred))[None, None]
    point, label = click_center(torch.from_numpy(np.ascontiguousarray(gt))[None, None], p)
    return (int(point[0, 0, 0]), int(point[0, 0, 1])), int(label[0, 0])


def number_of_clicks(ious: list[float], threshold: float, max_clicks: int) -> int:
    """The first k (1-based) with ``ious[k-1] >= threshold``; ``max_clicks`` when none."""
    for k, v in enumerate(ious[:max_clicks], start=1):
        if v >= threshold:
            return k
    return max_clicks


def object_box(mask: np.ndarray) -> np.ndarray:
    """The tight box (x0, y0, x1, y1) of a non-empty mask, inclusive pixel bounds."""
    ys, xs = np.nonzero(mask)
    return np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float32)


def simulate(predictor, gt: np.ndarray, max_clicks: int) -> tuple[list[float], list[tuple[int, int, int]]]:
    """Run the click protocol for one object on the predictor's current image: the IoU after each
    click (``max_clicks`` values) and the clicks ``(x, y, label)``."""
    points: list[tuple[int, int]] = []
    labels: list[int] = []
    ious: list[float] = []
    pred: np.ndarray | None = None
    logits = None
    for k in range(max_clicks):
        click = next_click(gt, pred)
        if click is None:  # perfect already: nothing to correct
            ious.append(ious[-1])
            continue
        points.append(click[0])
        labels.append(click[1])
        masks, scores, low = predictor.predict(
            point_coords=np.array(points, dtype=np.float32),
            point_labels=np.array(labels, dtype=np.int32),
            mask_input=logits,
            multimask_output=k == 0,
        )
        best = int(np.argmax(scores)) if k == 0 else 0
        pred = masks[best] > 0
        logits = low[best][None]
        ious.append(mask_iou(pred, gt))
    return ious, [(x, y, lab) for (x, y), lab in zip(points, labels)]


@dataclass
class ClickResult:
    """mIoU@k for k = 1..max_clicks, NoC at each threshold, the box-prompt mIoU, and per object the
    IoU after each click."""

    miou: list[float]
    noc: dict[float, float]
    box_miou: float
    max_clicks: int
    images: int
    objects: int
    seconds: float
    per_object: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self, per_object: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {
            "mIoU@k": {str(k): v for k, v in enumerate(self.miou, start=1)},
            **{f"NoC@{round(t * 100)}": v for t, v in self.noc.items()},
            "box mIoU": self.box_miou,
            "max_clicks": self.max_clicks,
            "images": self.images,
            "objects": self.objects,
            "seconds": self.seconds,
            "seconds_per_object": self.seconds / max(self.objects, 1),
        }
        if per_object:
            d["per_object"] = self.per_object
        return d


def clicks(
    model,
    data,
    *,
    max_clicks: int = 20,
    max_objects: int | None = None,
    max_images: int | None = None,
    thresholds: tuple[float, ...] = NOC_THRESHOLDS,
    progress: bool = False,
) -> ClickResult:
    """Evaluate interactive segmentation with simulated clicks on a dataset of images.

    Args:
        model: a samkit model (:func:`samkit.load_model`) or an :class:`~samkit.ImagePredictor`.
        data: ``coco:ANNOTATIONS.json:IMAGE_DIR``, ``folder:IMAGE_DIR:MASK_DIR`` or an
            :class:`ImageSet`.
        max_clicks: clicks per object (N of mIoU@N; NoC is N when the threshold is never reached).
        max_objects: at most this many objects per image (the same ones on every run).
        max_images: the first images only.
        thresholds: the IoU thresholds of NoC.
        progress: a progress bar over images.
    """
    from tqdm.auto import tqdm

    from ..predictors import ImagePredictor

    if max_clicks < 1:
        raise EvalError(f"max_clicks must be >= 1, got {max_clicks}")
    images = data if isinstance(data, ImageSet) else ImageSet(data, max_objects, max_images)
    predictor = model if isinstance(model, ImagePredictor) else ImagePredictor(model)
    per_object: list[dict[str, Any]] = []
    start = time.perf_counter()
    for item in tqdm(images, total=len(images), desc="samkit eval clicks", unit="img", disable=not progress):
        predictor.set_image(item.image)
        for oid, gt in zip(item.object_ids, item.masks):
            masks, _, _ = predictor.predict(box=object_box(gt), multimask_output=False)
            box_iou = mask_iou(masks[0] > 0, gt)
            ious, path = simulate(predictor, gt, max_clicks)
            per_object.append(
                {"image": item.name, "object": oid, "ious": ious, "box_iou": box_iou, "clicks": path}
            )
    if not per_object:
        raise EvalError(f"{images.spec}: no object to evaluate")
    iou_table = np.array([o["ious"] for o in per_object])
    return ClickResult(
        miou=[float(v) for v in iou_table.mean(axis=0)],
        noc={
            t: float(np.mean([number_of_clicks(o["ious"], t, max_clicks) for o in per_object]))
            for t in thresholds
        },
        box_miou=float(np.mean([o["box_iou"] for o in per_object])),
        max_clicks=max_clicks,
        images=len(images),
        objects=len(per_object),
        seconds=time.perf_counter() - start,
        per_object=per_object,
    )
