"""Prompt-free segmentation heads (AutoSAM-style): train once on labelled masks of a few classes,
then segment them in any number of images with no prompt at the cost of the image encoder."""

from __future__ import annotations

from .data import ClassImages, EmbeddingCache
from .model import HeadError, PromptFreeHead
from .train import HeadResult, HeadSettings, head_loss, train_head

__all__ = [
    "ClassImages",
    "EmbeddingCache",
    "HeadError",
    "HeadResult",
    "HeadSettings",
    "PromptFreeHead",
    "head_loss",
    "train_head",
]
