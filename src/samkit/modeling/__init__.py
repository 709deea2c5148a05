"""The SAM 2 network, one module per paper component."""

from .image_encoder import BackboneOutput, ImageEncoder
from .mask_decoder import MaskDecoder
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .prompt_encoder import PromptEncoder
from .sam2 import SAM2Model
from .transformer import TwoWayTransformer

__all__ = [
    "BackboneOutput",
    "ImageEncoder",
    "MaskDecoder",
    "MemoryAttention",
    "MemoryEncoder",
    "PromptEncoder",
    "SAM2Model",
    "TwoWayTransformer",
]
