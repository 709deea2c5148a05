"""samkit: segment anything in images and video, fast — a pure-PyTorch SAM 2 / SAM 2.1 engine."""

from .build_sam import build_sam2, build_sam2_hf, build_sam2_video_predictor, build_sam2_video_predictor_hf
from .checkpoints import CheckpointError, DownloadError, build_model, download_checkpoint, load_model
from .configs import VARIANTS, HieraConfig, ModelConfig, get_config, variant_names
from .heads.model import PromptFreeHead
from .modeling import SAM2Model
from .predictors import AutomaticMaskGenerator, ImagePredictor, VideoPredictor, VideoState
from .runtime import tune_allocator
from .stream import StreamTracker
from .text import TextPredictor

# The reference's class names, so code written for Meta's `sam2` package needs only its imports
# changed (`from samkit import SAM2ImagePredictor` for `from sam2.sam2_image_predictor import ...`).
SAM2ImagePredictor = ImagePredictor
SAM2AutomaticMaskGenerator = AutomaticMaskGenerator
SAM2VideoPredictor = VideoPredictor

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
    "PromptFreeHead",
    "SAM2AutomaticMaskGenerator",
    "SAM2ImagePredictor",
    "SAM2VideoPredictor",
    "SAM2Model",
    "StreamTracker",
    "TextPredictor",
    "build_model",
    "build_sam2",
    "build_sam2_hf",
    "build_sam2_video_predictor",
    "build_sam2_video_predictor_hf",
    "download_checkpoint",
    "get_config",
    "load_model",
    "tune_allocator",
    "variant_names",
]
