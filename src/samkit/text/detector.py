"""Open-vocabulary detectors for text prompts, through Hugging Face ``transformers``' zero-shot object
detection (``AutoModelForZeroShotObjectDetection`` + ``AutoProcessor``): Grounding DINO and OWLv2 /
OWL-ViT. Boxes and scores are the processor's own post-processing; samkit adds each box's phrase."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

DEFAULT_DETECTOR = "IDEA-Research/grounding-dino-tiny"
KINDS = {"grounding-dino": "grounding-dino", "owlv2": "owl", "owlvit": "owl"}


class TextError(ValueError):
    """A text prompt or detector that cannot be used: empty or too long text, thresholds outside
    [0, 1], an unknown or unreachable detector, transformers missing."""


def parse_phrases(text: str) -> list[str]:
    """The phrases of a text prompt: ``"truck . person"`` -> ``["truck", "person"]`` (separated by
    ``.``, as Grounding DINO reads them; lower-cased, blanks collapsed, repeats dropped)."""
    if not isinstance(text, str):
        raise TextError(f"a text prompt is a string, got {type(text).__name__}")
    phrases: list[str] = []
    for part in text.split("."):
        p = " ".join(part.lower().split())
        if p and p not in phrases:
            phrases.append(p)
    if not phrases:
        raise TextError(
            f"empty text prompt {text!r}: give one or more phrases separated by '.', e.g. 'truck . person'"
        )
    return phrases


def check_threshold(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
        raise TextError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


@dataclass
class Detections:
    """One image's detections: boxes (N, 4) x0, y0, x1, y1 pixels, detector scores (N,), each box's
    phrase and its position in the prompt's phrases."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: list[str]
    label_ids: np.ndarray
    phrases: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    @classmethod
    def empty(cls, phrases: list[str]) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [], np.zeros(0, np.int64), phrases)

    def select(self, keep) -> Detections:
        keep = np.asarray(keep, dtype=np.int64)
        return Detections(
            self.boxes[keep],
            self.scores[keep],
            [self.labels[i] for i in keep],
            self.label_ids[keep],
            self.phrases,
        )


def _require_transformers():
    try:
        import transformers  # noqa: F401
    except ImportError:
        raise TextError("text prompts need transformers: pip install 'samkit[text]'") from None


class Detector:
    """A zero-shot detector and its processor. :meth:`load` takes a Hugging Face id (downloaded once
    into the hub cache, like samkit's checkpoints) or a local folder (``save_pretrained``)."""

    def __init__(self, model, processor, name: str) -> None:
        kind = KINDS.get(getattr(model.config, "model_type", ""))
        if kind is None:
            raise TextError(
                f"{name} is a {getattr(model.config, 'model_type', '?')} model; text prompts take Grounding DINO "
                "or OWLv2 / OWL-ViT detectors"
            )
        self.model, self.processor, self.name, self.kind = model.eval(), processor, name, kind
        cfg = model.config
        self.max_tokens = int(
            cfg.max_text_len if kind == "grounding-dino" else cfg.text_config.max_position_embeddings
        )

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @classmethod
    def load(
        cls, name: str | os.PathLike | None = None, device: str | torch.device | None = None
    ) -> Detector:
        """``name``: a Hugging Face id (default ``IDEA-Research/grounding-dino-tiny``) or a local folder."""
        _require_transformers()
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # a bar per weight file: noise beside samkit's own

        from ..checkpoints import _hub_unreachable, resolve_device

        name = str(name or DEFAULT_DETECTOR)
        local = Path(name).expanduser()
        source = str(local) if local.is_dir() else name
        if not local.is_dir() and (local.exists() or name.startswith((".", "/", "~"))):
            raise TextError(f"detector folder not found: {name}")

        def from_pretrained(**kw):
            return (
                AutoModelForZeroShotObjectDetection.from_pretrained(source, **kw),
                AutoProcessor.from_pretrained(source, **kw),
            )

        try:
            model, processor = from_pretrained(local_files_only=True)
        except (OSError, ValueError):
            if local.is_dir():
                raise TextError(
                    f"{name} is not a detector folder (save_pretrained of a model and processor)"
                ) from None
            why = _hub_unreachable()
            if why is not None:
                raise TextError(
                    f"detector {name} is not in the local cache and could not be downloaded ({why}): pass "
                    "--detector path/to/folder, or run once when online"
                ) from None
            try:
                model, processor = from_pretrained()
            except (OSError, ValueError) as e:
                raise TextError(f"cannot load detector {name}: {e}") from None
        return cls(model.to(resolve_device(device)), processor, name)

    # --- detection -------------------------------------------------------------------------------

    def _check_length(self, phrases: list[str]) -> None:
        tok = self.processor.tokenizer
        if self.kind == "grounding-dino":
            n = len(tok(self.prompt_text(phrases))["input_ids"])
            if n > self.max_tokens:
                raise TextError(
                    f"the text prompt is {n} tokens; {self.name} reads at most {self.max_tokens}: use fewer or "
                    "shorter phrases"
                )
        else:
            for p in phrases:
                n = len(tok(p)["input_ids"])
                if n > self.max_tokens:
                    raise TextError(
                        f"the phrase {p!r} is {n} tokens; {self.name} reads at most {self.max_tokens} per phrase"
                    )

    @staticmethod
    def prompt_text(phrases: list[str]) -> str:
        """Grounding DINO's text: phrases separated and ended by '.'."""
        return " . ".join(phrases) + " ."

    @torch.inference_mode()
    def detect(
        self,
        images: list[np.ndarray],
        phrases: list[str],
        box_threshold: float = 0.35,
        text_threshold: float = 0.25,
    ) -> list[Detections]:
        """Detections of ``phrases`` in each HxWx3 uint8 RGB image, boxes in its pixels."""
        from PIL import Image

        box_threshold = check_threshold("box_threshold", box_threshold)
        text_threshold = check_threshold("text_threshold", text_threshold)
        if not phrases:
            raise TextError("no phrase to detect")
        self._check_length(phrases)
        pils = [Image.fromarray(np.ascontiguousarray(im)) for im in images]
        sizes = [im.shape[:2] for im in images]
        if self.kind == "grounding-dino":
            return self._grounding_dino(pils, sizes, phrases, box_threshold, text_threshold)
        return self._owl(pils, sizes, phrases, box_threshold)

    def _grounding_dino(self, pils, sizes, phrases, box_threshold, text_threshold) -> list[Detections]:
        text = self.prompt_text(phrases)
        inputs = self.processor(images=pils, text=[text] * len(pils), return_tensors="pt").to(self.device)
        out = self.model(**inputs)
        results = self.processor.post_process_grounded_object_detection(
            out,
            inputs["input_ids"],
            threshold=box_threshold,
            text_threshold=text_threshold,
            target_sizes=sizes,
        )
        # each box's phrase: the phrase whose tokens the box scores highest (the processor's own label
        # joins every token above text_threshold, separators included, which is not one of the phrases)
        spans = self._phrase_spans(inputs["input_ids"][0].tolist(), len(phrases))
        probs = out.logits.sigmoid()  # (B, queries, tokens)
        detections = []
        for b, r in enumerate(results):
            keep = probs[b].max(dim=-1).values > box_threshold  # the processor's selection, in its order
            per = torch.stack([probs[b][keep][:, s].max(dim=-1).values for s in spans], dim=-1)
            ids = per.argmax(dim=-1).cpu().numpy() if len(per) else np.zeros(0, np.int64)
            boxes = r["boxes"].float().cpu().numpy().reshape(-1, 4)
            if len(ids) != len(boxes):  # pragma: no cover - a processor that selects differently
                raise TextError(
                    f"{self.name}: its post-processing kept {len(boxes)} boxes, expected {len(ids)}"
                )
            detections.append(self._finish(boxes, r["scores"], ids, phrases, sizes[b]))
        return detections

    def _phrase_spans(self, ids: list[int], n: int) -> list[list[int]]:
        """Token positions of each phrase in Grounding DINO's input (between the '.' separators)."""
        tok = self.processor.tokenizer
        dot = tok.convert_tokens_to_ids(".")
        special = set(tok.all_special_ids)
        spans, cur = [], []
        for i, t in enumerate(ids):
            if t == dot or t in special:
                if cur:
                    spans.append(cur)
                    cur = []
                continue
            cur.append(i)
        if cur:
            spans.append(cur)
        if len(spans) != n:  # pragma: no cover - a phrase made of separators only is removed earlier
            raise TextError(f"{self.name}: could not find the {n} phrases in the tokenized prompt")
        return spans

    def _owl(self, pils, sizes, phrases, box_threshold) -> list[Detections]:
        inputs = self.processor(images=pils, text=[phrases] * len(pils), return_tensors="pt").to(self.device)
        out = self.model(**inputs)
        # OWLv2 pads every image to a square at its bottom and right: boxes are in that square's pixels
        square = self.model.config.model_type == "owlv2"
        targets = [(max(h, w), max(h, w)) if square else (h, w) for h, w in sizes]
        results = self.processor.post_process_grounded_object_detection(
            out, threshold=box_threshold, target_sizes=targets, text_labels=[phrases] * len(pils)
        )
        return [
            self._finish(
                r["boxes"].float().cpu().numpy().reshape(-1, 4),
                r["scores"],
                r["labels"].cpu().numpy(),
                phrases,
                hw,
            )
            for r, hw in zip(results, sizes)
        ]

    @staticmethod
    def _finish(boxes: np.ndarray, scores, ids: np.ndarray, phrases: list[str], hw) -> Detections:
        h, w = hw
        boxes = boxes.copy()
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
        scores = torch.as_tensor(scores).float().cpu().numpy().reshape(-1)
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        # boxes squeezed to nothing by the image's edges are not objects
        ok = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        d = Detections(boxes.astype(np.float32), scores, [phrases[i] for i in ids], ids, phrases)
        return d.select(np.flatnonzero(ok))
