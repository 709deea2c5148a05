"""Text prompts ("segment every truck"): an open-vocabulary detector (Grounding DINO, OWLv2) through
Hugging Face transformers finds boxes for the phrases; SAM 2 segments them (images), tracks them with
continuous ids (videos), in batch jobs and in the server."""

from __future__ import annotations

from .detector import DEFAULT_DETECTOR, Detections, Detector, TextError, parse_phrases
from .predictor import TextPredictor, TextResult

__all__ = [
    "DEFAULT_DETECTOR",
    "Detections",
    "Detector",
    "TextError",
    "TextPredictor",
    "TextResult",
    "parse_phrases",
]
