"""User-facing predictors: images now; video and automatic masks build on the same pieces."""

from .image import ImagePredictor

__all__ = ["ImagePredictor"]
