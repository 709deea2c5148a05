"""User-facing predictors: images now; video and automatic masks build on the same pieces."""

from .automatic import AutomaticMaskGenerator
from .image import ImagePredictor
from .video import VideoPredictor, VideoState

__all__ = ["AutomaticMaskGenerator", "ImagePredictor", "VideoPredictor", "VideoState"]
