"""What a batch job computes for one image, independent of the engine that schedules it.

:class:`BatchSettings` holds everything that decides the results; :class:`Segmenter` holds the model
and turns decoded images (plus their prompts) into result documents. The local engine and every Ray
actor run the same Segmenter, so both write the same bytes.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import rle
from .. import transforms as T
from ..visualize import mask_stats
from .prompts import Prompt

MODES = ("prompts", "auto", "head", "text")
# AutomaticMaskGenerator arguments a job may set (the CLI exposes them as --points-per-side etc.)
AUTO_ARGS = (
    "points_per_side",
    "points_per_batch",
    "pred_iou_thresh",
    "stability_score_thresh",
    "stability_score_offset",
    "mask_threshold",
    "box_nms_thresh",
    "crop_n_layers",
    "crop_nms_thresh",
    "crop_overlap_ratio",
    "crop_n_points_downscale_factor",
    "min_mask_region_area",
    "use_m2m",
    "multimask_output",
)
# scores are written rounded, so that the last float bits (which depend on thread count and
# batch composition in the GEMMs) never make two runs of the same job differ
SCORE_DIGITS = 5


@dataclass(frozen=True)
class BatchSettings:
    """Everything that decides a job's results (and how they are written).

    model/checkpoint/device/precision: as for :func:`samkit.load_model`.
    mode: ``"prompts"`` (masks for the prompt file's points/boxes) or ``"auto"`` (automatic masks).
    auto: AutomaticMaskGenerator arguments for ``mode="auto"`` (see :data:`AUTO_ARGS`).
    head: the prompt-free head file for ``mode="head"`` (``samkit train-head``); instances: split
    its masks into connected components.
    text, detector, box_threshold, text_threshold, nms: ``mode="text"``'s prompt (phrases separated by
    '.') and detector settings (:class:`samkit.text.TextPredictor`).
    batch_size: images encoded together (0: the model's choice, 1 on the CPU).
    png: also write each mask as PNG; overlay: also write the image with its masks drawn.
    """

    model: str = "sam2.1-hiera-tiny"
    checkpoint: str | None = None
    device: str | None = None
    precision: str = "fp32"
    mode: str = "prompts"
    auto: dict = field(default_factory=dict)
    batch_size: int = 0
    png: bool = False
    overlay: bool = False
    head: str | None = None
    instances: bool = False
    text: str | None = None
    detector: str | None = None
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    nms: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if (self.mode == "head") != (self.head is not None):
            raise ValueError("a head file goes with mode='head' (and mode='head' needs one)")
        if (self.mode == "text") != (self.text is not None):
            raise ValueError("a text prompt goes with mode='text' (and mode='text' needs one)")
        unknown = set(self.auto) - set(AUTO_ARGS)
        if unknown:
            raise ValueError(f"unknown automatic-mask argument(s): {', '.join(sorted(unknown))}")
        if self.batch_size < 0:
            raise ValueError(f"batch_size must be >= 0, got {self.batch_size}")

    def identity(self) -> dict:
        """The settings that change what a result file holds (not where or how fast it is computed)."""
        ckpt = None
        if self.checkpoint:
            p = Path(self.checkpoint)
            ckpt = {"name": p.name, "bytes": p.stat().st_size if p.exists() else None}
        return {
            "model": self.model,
            "checkpoint": ckpt,
            "precision": self.precision,
            "mode": self.mode,
            "auto": dict(sorted(self.auto.items())) if self.mode == "auto" else None,
            **(
                {"head": _file_identity(self.head), "instances": self.instances}
                if self.mode == "head"
                else {}
            ),
            **(
                {
                    "text": self.text,
                    "detector": self.detector,
                    "thresholds": [self.box_threshold, self.text_threshold, self.nms],
                }
                if self.mode == "text"
                else {}
            ),
        }

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class ImageResult:
    """One image's outcome: ``doc`` (the per-image JSON) when it worked, ``error`` when it did not."""

    key: str
    doc: dict | None = None
    error: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def num_masks(self) -> int:
        return len(self.doc["annotations"]) if self.doc else 0


def dumps(doc: dict) -> str:
    """The per-image JSON text: compact, keys in a fixed order, so equal results are equal bytes."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True)


def error_text(e: BaseException) -> str:
    """One line naming what went wrong."""
    msg = " ".join(str(e).split())
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


def _file_identity(path: str) -> dict:
    from ..eval.report import file_sha256

    p = Path(path)
    return {"name": p.name, "sha256": file_sha256(p) if p.is_file() else None}


def _score(x: float) -> float:
    return round(float(x), SCORE_DIGITS)


class Segmenter:
    """The model side of a job: ``segment(items)`` for a batch of decoded images.

    Args:
        settings: the job's :class:`BatchSettings`.
        model: an already loaded SAM2Model (else it is loaded from the settings).
    """

    def __init__(self, settings: BatchSettings, model=None) -> None:
        from ..checkpoints import load_model
        from ..predictors import AutomaticMaskGenerator, ImagePredictor

        self.settings = settings
        if model is None:
            model = load_model(
                settings.model,
                checkpoint=settings.checkpoint,
                device=settings.device,
                precision=settings.precision,
            )
        self.model = model
        self.batch_size = settings.batch_size or model.encoder_batch
        self.predictor = ImagePredictor(model)
        self.generator = None
        self.head = None
        if settings.mode == "head":
            from ..heads import PromptFreeHead

            self.head = PromptFreeHead.load(settings.head, device=model.device)
            self.head.check_model(model)
        self.text = None
        if settings.mode == "text":
            self._text_predictor()
        if settings.mode == "auto":
            self.generator = AutomaticMaskGenerator(
                model, output_mode="coco_rle", fast=settings.precision == "bf16", **settings.auto
            )

    def _doc(self, key: str, image: np.ndarray, annotations: list[dict]) -> dict:
        h, w = image.shape[:2]
        return {
            "image": key,
            "width": int(w),
            "height": int(h),
            "model": self.model.cfg.name,
            "mode": self.settings.mode,
            "annotations": annotations,
        }

    @torch.inference_mode()
    def segment(
        self,
        items: list[tuple[str, np.ndarray, list[Prompt] | None]],
    ) -> list[ImageResult]:
        """Results for (key, image, prompts or None) items; an image that fails gives a result with
        ``error`` set, and the others go on."""
        if self.settings.mode == "auto":
            return [self._one(self._auto, key, image) for key, image, _ in items]
        t0 = time.perf_counter()
        batch = T.preprocess_images([im for _, im, _ in items], self.model.cfg.image_size, self.model.device)
        embed, high_res = self.model.encode_images(batch)
        if self.head is not None:
            return self._head(items, embed, high_res, t0)
        if self.text is not None:
            return self._text(items, embed, high_res, t0)
        share = (time.perf_counter() - t0) / len(items)
        results = []
        for i, (key, image, prompts) in enumerate(items):
            self.predictor.set_embedding(embed[i : i + 1], [f[i : i + 1] for f in high_res], image.shape[:2])
            r = self._one(self._prompted, key, image, prompts)
            r.seconds += share
            results.append(r)
        return results

    def _head(self, items, embed: torch.Tensor, high_res: list[torch.Tensor], t0: float) -> list[ImageResult]:
        from ..heads.model import head_annotations

        try:
            outs = self.head.predict_features(embed, high_res, [im.shape[:2] for _, im, _ in items])
        except (ValueError, RuntimeError) as e:
            return [ImageResult(key, error=error_text(e)) for key, _, _ in items]
        share = (time.perf_counter() - t0) / len(items)
        classes = self.head.classes
        return [
            ImageResult(
                key,
                doc=self._doc(key, image, head_annotations(masks, scores, classes, self.settings.instances)),
                seconds=share,
            )
            for (key, image, _), (masks, scores) in zip(items, outs)
        ]

    def _text(self, items, embed: torch.Tensor, high_res: list[torch.Tensor], t0: float) -> list[ImageResult]:
        """Text mode: the detector on the whole batch, then one box prompt per image."""
        from ..text import TextResult
        from ..text.predictor import masks_for_boxes

        images = [im for _, im, _ in items]
        try:
            found = self.text.detect(images, self.settings.text)
        except (ValueError, RuntimeError) as e:
            return [ImageResult(key, error=error_text(e)) for key, _, _ in items]
        share = (time.perf_counter() - t0) / len(items)
        results = []
        for i, ((key, image, _), d) in enumerate(zip(items, found)):
            t = time.perf_counter()
            self.predictor.set_embedding(embed[i : i + 1], [f[i : i + 1] for f in high_res], image.shape[:2])
            masks, scores = masks_for_boxes(self.predictor, d.boxes, image.shape[:2])
            anns = TextResult(masks, d.boxes, d.labels, d.scores, scores, d.phrases).annotations()
            doc = self._doc(key, image, anns)
            doc["phrases"] = d.phrases
            results.append(ImageResult(key, doc=doc, seconds=share + time.perf_counter() - t))
        return results

    def _one(self, fn, key: str, image: np.ndarray, *args) -> ImageResult:
        t = time.perf_counter()
        try:
            doc = self._doc(key, image, fn(image, *args))
            return ImageResult(key, doc=doc, seconds=time.perf_counter() - t)
        except (ValueError, RuntimeError, TypeError, IndexError) as e:
            return ImageResult(key, error=error_text(e), seconds=time.perf_counter() - t)

    def _auto(self, image: np.ndarray) -> list[dict]:
        anns = self.generator.generate(image)
        return [
            {
                "segmentation": a["segmentation"],
                "area": int(a["area"]),
                "bbox": [float(v) for v in a["bbox"]],
                "predicted_iou": _score(a["predicted_iou"]),
                "stability_score": _score(a["stability_score"]),
                "point_coords": [[float(x), float(y)] for x, y in a["point_coords"]],
                "crop_box": [float(v) for v in a["crop_box"]],
            }
            for a in anns
        ]

    def _prompted(self, image: np.ndarray, prompts: list[Prompt] | None) -> list[dict]:
        if not prompts:
            raise ValueError("no prompts for this image in the prompt file")
        h, w = image.shape[:2]
        for p in prompts:  # the same rule as every entry point: points inside the image
            p.check_bounds(w, h)
        texts = [j for j, p in enumerate(prompts) if getattr(p, "text", None) is not None]
        extra = self._text_lines(image, prompts, texts) if texts else []
        # prompts of the same shape are decoded together: (B, N, 2) points and/or (B, 4) boxes
        groups: dict[tuple, list[int]] = {}
        for j, p in enumerate(prompts):
            if getattr(p, "text", None) is not None:
                continue
            sig = (len(p.points) if p.points else 0, p.box is not None)
            groups.setdefault(sig, []).append(j)
        out: list[dict | None] = [None] * len(prompts)
        for (npts, has_box), idx in groups.items():
            ps = [prompts[j] for j in idx]
            coords = np.array([p.points for p in ps], dtype=np.float32) if npts else None
            labels = np.array([p.labels for p in ps], dtype=np.int64) if npts else None
            boxes = np.array([p.box for p in ps], dtype=np.float32) if has_box else None
            multimask = ps[0].multimask
            masks, scores, _ = self.predictor.predict(
                point_coords=coords if coords is None or len(ps) > 1 else coords[0],
                point_labels=labels if labels is None or len(ps) > 1 else labels[0],
                box=boxes if boxes is None or len(ps) > 1 else boxes[0],
                multimask_output=multimask,
            )
            if len(ps) == 1:
                masks, scores = masks[None], scores[None]
            for j, m, s in zip(idx, masks, scores):
                best = int(np.argmax(s))
                mask = m[best] > 0
                stats = mask_stats(mask)
                out[j] = {
                    "prompt_index": j,
                    "prompt": prompts[j].as_dict(),
                    "segmentation": rle.encode(mask),
                    "area": stats["area"],
                    "bbox": [float(v) for v in stats["bbox"]],
                    "predicted_iou": _score(s[best]),
                }
        return [o for o in out if o is not None] + extra

    def _text_predictor(self):
        """The job's TextPredictor (its detector loaded once): for text mode, and for a prompt file's
        text lines."""
        if self.text is None:
            from ..text import TextPredictor

            s = self.settings
            self.text = TextPredictor(
                self.predictor,
                detector=s.detector,
                box_threshold=s.box_threshold,
                text_threshold=s.text_threshold,
                nms=s.nms,
            )
        return self.text

    def _text_lines(self, image: np.ndarray, prompts: list[Prompt], which: list[int]) -> list[dict]:
        """Prompt-file lines with ``text``: every object each names (the detector loads once)."""
        from ..text import TextResult
        from ..text.predictor import masks_for_boxes

        out = []
        for j in which:
            d = self._text_predictor().detect([image], prompts[j].text)[0]
            masks, scores = masks_for_boxes(self.predictor, d.boxes, image.shape[:2])
            for a in TextResult(masks, d.boxes, d.labels, d.scores, scores, d.phrases).annotations():
                a.pop("category_id")  # phrases differ per line: the line's own phrases name the object
                out.append({"prompt_index": j, "prompt": prompts[j].as_dict(), **a})
        return out
