"""Text prompts on images: an open-vocabulary detector's boxes become one batched box prompt."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .detector import Detections, Detector, TextError, check_threshold, parse_phrases


@dataclass
class TextResult:
    """What a text prompt found in one image: masks (N, H, W) bool, boxes (N, 4) x0, y0, x1, y1, each
    object's phrase, the detector's scores and the masks' predicted IoUs (all (N,)), and the prompt's
    phrases (COCO categories, in order)."""

    masks: np.ndarray
    boxes: np.ndarray
    labels: list[str]
    scores: np.ndarray
    mask_scores: np.ndarray
    phrases: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def annotations(self) -> list[dict[str, Any]]:
        """COCO annotations (RLE, area, bbox, ``category_id`` = the phrase's position + 1, ``category``,
        ``score`` of the detector, ``predicted_iou`` of the mask, ``box`` of the detector)."""
        from .. import rle
        from ..visualize import mask_stats

        out = []
        for m, b, lab, s, ms in zip(self.masks, self.boxes, self.labels, self.scores, self.mask_scores):
            stats = mask_stats(m)
            out.append(
                {
                    "segmentation": rle.encode(m),
                    "area": stats["area"],
                    "bbox": [float(v) for v in stats["bbox"]],
                    "category_id": self.phrases.index(lab) + 1,
                    "category": lab,
                    "score": round(float(s), 5),
                    "predicted_iou": round(float(ms), 5),
                    "box": [round(float(v), 2) for v in b],
                }
            )
        return out


def suppress(d: Detections, iou_threshold: float | None) -> Detections:
    """Box NMS across phrases (a box overlapping a higher-scored one of any phrase by more than
    ``iou_threshold`` is dropped); None keeps every box."""
    if iou_threshold is None or len(d) < 2:
        return d
    from ..amg import nms

    keep = nms(torch.from_numpy(d.boxes), torch.from_numpy(d.scores), float(iou_threshold))
    return d.select(np.sort(keep.numpy()))


def masks_for_boxes(predictor, boxes: np.ndarray, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """One decoder call for every box on the predictor's image: masks (N, H, W) bool, scores (N,)."""
    if len(boxes) == 0:
        return np.zeros((0, *hw), bool), np.zeros(0, np.float32)
    masks, scores, _ = predictor.predict(box=np.asarray(boxes, np.float32), multimask_output=False)
    n = len(boxes)  # one box comes back without the batch axis
    return masks.reshape(n, -1, *hw)[:, 0] > 0, np.asarray(scores).reshape(n, -1)[:, 0]


class TextPredictor:
    """Segment what a text prompt names: ``predict(image, "truck . person")``.

    Args:
        model: a samkit model (:func:`samkit.load_model`) or an :class:`~samkit.ImagePredictor`.
        detector: a Hugging Face id or local folder of a Grounding DINO / OWLv2 / OWL-ViT detector, or a
            loaded :class:`Detector` (default ``IDEA-Research/grounding-dino-tiny``).
        box_threshold, text_threshold: the detector's thresholds (text_threshold: Grounding DINO only).
        nms: IoU above which a box is dropped for a higher-scored one of any phrase (default: none).
    """

    def __init__(
        self,
        model,
        detector: str | Detector | None = None,
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
        nms: float | None = None,
    ) -> None:
        from ..predictors import ImagePredictor

        self.predictor = model if isinstance(model, ImagePredictor) else ImagePredictor(model)
        dev = self.predictor.model.device
        self.detector = detector if isinstance(detector, Detector) else Detector.load(detector, device=dev)
        self.box_threshold = check_threshold("box_threshold", box_threshold)
        self.text_threshold = check_threshold("text_threshold", text_threshold)
        self.nms = None if nms is None else check_threshold("nms", nms)

    def detect(self, images: list[np.ndarray], text: str, **kw) -> list[Detections]:
        """The detector's boxes for each image (after NMS), without masks."""
        phrases = parse_phrases(text)
        bt, tt = kw.get("box_threshold"), kw.get("text_threshold")
        bt = check_threshold("box_threshold", self.box_threshold if bt is None else bt)
        tt = check_threshold("text_threshold", self.text_threshold if tt is None else tt)
        nms = kw.get("nms", self.nms)
        return [suppress(d, nms) for d in self.detector.detect(images, phrases, bt, tt)]

    def predict(
        self,
        image,
        text: str,
        box_threshold: float | None = None,
        text_threshold: float | None = None,
        nms: float | None = None,
    ) -> TextResult:
        """Masks of everything ``text`` names in ``image`` (HxWx3 uint8 RGB or PIL); an empty result
        when nothing is found."""
        from .. import transforms as T

        image = T.to_rgb_array(image)
        kw = {
            "box_threshold": box_threshold,
            "text_threshold": text_threshold,
            "nms": nms if nms is not None else self.nms,
        }
        d = self.detect([image], text, **kw)[0]
        hw = image.shape[:2]
        masks, mask_scores = np.zeros((0, *hw), bool), np.zeros(0, np.float32)
        if len(d):
            self.predictor.set_image(image)
            masks, mask_scores = masks_for_boxes(self.predictor, d.boxes, hw)
        return TextResult(masks, d.boxes, d.labels, d.scores, mask_scores, d.phrases)


__all__ = ["TextError", "TextPredictor", "TextResult", "masks_for_boxes", "suppress"]
