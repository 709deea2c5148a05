"""Building blocks of automatic mask generation, in torch and numpy (no torchvision, no OpenCV).

Point grids, crop boxes, stability scores, mask boxes, greedy non-maximum suppression and the
crop-edge test, with the reference's semantics (including its box convention: x1, y1 are the last
foreground pixel, so an XYWH width is x1 - x0).
"""

from __future__ import annotations

import math
from itertools import product

import numpy as np
import torch

from .kernels.cells import upsampled_stability_and_boxes
from .modeling.common import stability_score as _stability_score

__all__ = [
    "batched_mask_to_box",
    "box_area",
    "build_all_layer_point_grids",
    "build_point_grid",
    "generate_crop_boxes",
    "is_box_near_crop_edge",
    "nms",
    "stability_score",
    "upsampled_stability_and_boxes",
]


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) points (x, y) evenly spaced in [0, 1]^2, centred in their cells, row by row."""
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs = np.tile(side[None, :], (n_per_side, 1))
    ys = np.tile(side[:, None], (1, n_per_side))
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(n_per_side: int, n_layers: int, scale_per_layer: int) -> list[np.ndarray]:
    """One grid per crop layer; layer i has n_per_side / scale_per_layer**i points per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes [x0, y0, x1, y1] (the whole image first) and their layer indices; layer i
    has (2**i)**2 overlapping crops."""
    im_h, im_w = im_size
    short = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for i in range(n_layers):
        n = 2 ** (i + 1)
        overlap = int(overlap_ratio * short * (2 / n))
        cw, ch = crop_len(im_w, n, overlap), crop_len(im_h, n, overlap)
        x0s = [int((cw - overlap) * k) for k in range(n)]
        y0s = [int((ch - overlap) * k) for k in range(n)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + cw, im_w), min(y0 + ch, im_h)])
            layers.append(i + 1)
    return boxes, layers


def stability_score(logits: torch.Tensor, mask_threshold: float, offset: float) -> torch.Tensor:
    """:func:`samkit.modeling.common.stability_score` as the automatic mask generator scores it: an
    empty looser mask gives NaN, as in the reference."""
    return _stability_score(logits, mask_threshold, offset, empty=float("nan"))


def batched_mask_to_box(masks: torch.Tensor) -> torch.Tensor:
    """(..., H, W) bool -> (..., 4) int64 boxes x0, y0, x1, y1 (last foreground pixel); zeros if empty."""
    h, w = masks.shape[-2:]
    # max over uint8 is ~10x faster than any() over bool on the CPU
    as_bytes = masks.view(torch.uint8) if masks.dtype == torch.bool else masks.to(torch.uint8)
    rows = as_bytes.amax(dim=-1).bool()
    cols = as_bytes.amax(dim=-2).bool()
    top = rows.int().argmax(dim=-1)
    bottom = h - 1 - rows.flip(-1).int().argmax(dim=-1)
    left = cols.int().argmax(dim=-1)
    right = w - 1 - cols.flip(-1).int().argmax(dim=-1)
    boxes = torch.stack([left, top, right, bottom], dim=-1).long()
    return boxes * rows.any(dim=-1, keepdim=True)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression: indices of the kept boxes, highest score first.

    A box is dropped when its IoU with a kept, higher-scoring box exceeds ``iou_threshold``.
    Equal scores keep their input order.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64)
    b = boxes.detach().cpu().float().numpy()
    order = np.argsort(-scores.detach().cpu().float().numpy(), kind="stable")
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = np.maximum(b[:, None, :2], b[None, :, :2])
    rb = np.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (area[:, None] + area[None, :] - inter)
    suppressed = np.zeros(len(b), dtype=bool)
    keep = []
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return torch.as_tensor(np.array(keep, dtype=np.int64))


def is_box_near_crop_edge(
    boxes: torch.Tensor, crop_box: list[int], orig_box: list[int], atol: float = 20.0
) -> torch.Tensor:
    """Boxes (in crop coordinates) touching a crop edge that is not an image edge: (N,) bool."""
    crop = torch.as_tensor(crop_box, dtype=torch.float, device=boxes.device)
    orig = torch.as_tensor(orig_box, dtype=torch.float, device=boxes.device)
    offset = torch.tensor([crop_box[0], crop_box[1], crop_box[0], crop_box[1]], device=boxes.device)
    b = (boxes + offset).float()
    near_crop = torch.isclose(b, crop[None, :], atol=atol, rtol=0)
    near_image = torch.isclose(b, orig[None, :], atol=atol, rtol=0)
    return torch.any(near_crop & ~near_image, dim=1)
