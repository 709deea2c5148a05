"""samkit: segment anything in images and video, fast — a pure-PyTorch SAM 2 / SAM 2.1 engine."""

from .checkpoints import CheckpointError, DownloadError, build_model, download_checkpoint, load_model
from .configs import VARIANTS, HieraConfig, ModelConfig, get_config, variant_names
from .modeling import SAM2Model
from .predictors import AutomaticMaskGenerator, ImagePredictor, VideoPredictor, VideoState
from .runtime import tune_allocator

__version__ = "0.1.0"

__all__ = [
    "AutomaticMaskGenerator",
    "VARIANTS",
    "CheckpointError",
    "DownloadError",
    "HieraConfig",
    "ImagePredictor",
    "VideoPredictor",
    "VideoState",
    "ModelConfig",
    "SAM2Model",
    "build_model",
    "download_checkpoint",
    "get_config",
    "load_model",
    "tune_allocator",
    "variant_names",
]
