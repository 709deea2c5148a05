"""How good is a checkpoint or a setting on your data: video J&F (:func:`vos`), interactive image
segmentation with simulated clicks (:func:`clicks`) and automatic-mask recall (:func:`auto`)."""

from __future__ import annotations

from .auto import AutoResult, auto
from .clicks import ClickResult, clicks
from .data import ImageSet
from .errors import EvalError
from .vos import VosResult, boundary_f, boundary_map, region_similarity, vos

__all__ = [
    "AutoResult",
    "ClickResult",
    "EvalError",
    "ImageSet",
    "VosResult",
    "auto",
    "boundary_f",
    "boundary_map",
    "clicks",
    "region_similarity",
    "vos",
]
