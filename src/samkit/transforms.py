"""Pre- and post-processing shared by the predictors, tracker, mask generator, server and CLI.

- images: encoded bytes or files -> HxWx3 uint8 (one decoder); any HxW / HxWx1 / HxWx3 / HxWx4 uint8
  array or PIL image -> (3, S, S) normalized tensor (bilinear, antialiased resize to the square model
  input, ImageNet mean/std);
- video frames: -> (3, S, S) as the reference's video predictor prepares them (PIL bicubic resize);
- prompts: pixel coordinates of the original image -> the model's S x S frame;
- masks: low-resolution logits -> hole/sprinkle clean-up on the CPU -> original resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# the full-resolution binary masks are a kernel (several strategies, one plain expression)
from .kernels.upsample import (
    bilinear_axis,
    compile_error,
    compiled_row_mixer,
    flat_tiles,
    upsample_threshold,
    upsampled_bands,
    warm_up_compiled,
)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "bilinear_axis",
    "connected_components",
    "clean_small_regions",
    "compile_error",
    "compiled_row_mixer",
    "fill_small_regions",
    "small_regions",
    "ImageDecodeError",
    "decode_image",
    "load_image",
    "flat_tiles",
    "postprocess_masks",
    "upsample_threshold",
    "upsampled_bands",
    "preprocess_image",
    "preprocess_images",
    "preprocess_frame",
    "to_rgb_array",
    "transform_boxes",
    "transform_coords",
    "warm_up_compiled",
]


# --- images ----------------------------------------------------------------------------------


class ImageDecodeError(ValueError):
    """Image bytes that cannot be decoded. ``kind``: ``"empty"``, ``"too_large"`` (over the pixel
    limit, or a decompression bomb), ``"unsupported"`` (not an image format PIL reads) or
    ``"corrupt"`` (a known format that fails to decode)."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


def decode_image(data: bytes, max_pixels: int | None = None) -> np.ndarray:
    """The one image decoder (files, uploads, batch inputs): encoded bytes -> HxWx3 uint8 RGB.
    With ``max_pixels``, the pixel count is checked from the header before anything is decoded.
    Raises :class:`ImageDecodeError` with a one-line reason."""
    import io
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not data:
        raise ImageDecodeError("the image is empty (0 bytes)", "empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                if max_pixels is not None and w * h > max_pixels:
                    raise ImageDecodeError(f"{w}x{h} is over the limit of {max_pixels} pixels", "too_large")
                im.load()
                return to_rgb_array(im)
    except ImageDecodeError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageDecodeError("the image has too many pixels (decompression bomb)", "too_large") from None
    except UnidentifiedImageError:
        raise ImageDecodeError("not an image file PIL can read", "unsupported") from None
    except Exception as e:  # PIL raises many types for broken files; all mean "cannot decode"
        raise ImageDecodeError(f"cannot decode image ({type(e).__name__}: {e})", "corrupt") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as an HxWx3 uint8 RGB array (:func:`decode_image`), with a clear error for
    missing and unreadable files."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not an image file")
    try:
        return decode_image(path.read_bytes())
    except ImageDecodeError as e:
        raise ImageDecodeError(f"{path}: {e}", e.kind) from None


def to_rgb_array(image) -> np.ndarray:
    """Normalize a user image to an HxWx3 uint8 RGB numpy array.

    Accepts numpy arrays (HxW gray, HxWx1, HxWx3 RGB, HxWx4 RGBA — alpha dropped) of dtype
    uint8 (or bool), and PIL images of any mode. Anything else raises ValueError/TypeError.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if image.mode != "RGB":
            image = image.convert("RGB")
        arr = np.asarray(image)
    elif isinstance(image, np.ndarray):
        arr = image
    elif isinstance(image, torch.Tensor):
        raise TypeError(
            "expected an HxWx3 uint8 numpy array or PIL image, got a torch.Tensor; "
            "use tensor.permute(1, 2, 0).cpu().numpy() for a CHW tensor"
        )
    else:
        raise TypeError(f"expected an HxWx3 uint8 numpy array or PIL image, got {type(image).__name__}")

    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    if arr.dtype != np.uint8:
        raise ValueError(
            f"image must have dtype uint8 with values 0-255, got {arr.dtype}; "
            "for floats in [0, 1] use (img * 255).round().astype(np.uint8)"
        )
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        raise ValueError(
            f"image must be HxW, HxWx1, HxWx3 or HxWx4 (channels last), got shape {tuple(arr.shape)}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"image is empty: shape {tuple(arr.shape)}")
    return np.ascontiguousarray(arr)


def preprocess_image(image: np.ndarray, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """HxWx3 uint8 -> (3, size, size) float32, resized (bilinear, antialiased) and normalized."""
    if not image.flags.writeable:  # arrays viewing PIL buffers are read-only; torch wants writable memory
        image = image.copy()
    x = torch.from_numpy(image).to(device).permute(2, 0, 1).float().div(255)
    x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)[0]
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(-1, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(-1, 1, 1)
    return (x - mean) / std


def preprocess_images(
    images: Sequence[np.ndarray], size: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A list of HxWx3 uint8 arrays (sizes may differ) -> (B, 3, size, size)."""
    return torch.stack([preprocess_image(im, size, device) for im in images])


# --- video frames (the reference prepares them differently from images) ----------------------

_TABLES: dict[str, torch.Tensor] = {}  # device -> _normalize_table


def _normalize_table(device: torch.device) -> torch.Tensor:
    """(3, 256) float32: the normalized value of each 8-bit level in each channel, computed with the
    reference's operations (/255 in float64, to float32, minus the ImageNet mean, over its std, in
    float32), so that looking a level up gives its bits exactly."""
    key = str(device)
    table = _TABLES.get(key)
    if table is None:
        levels = (torch.arange(256, dtype=torch.float64) / 255.0).float()
        mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32)[:, None]
        std = torch.tensor(IMAGENET_STD, dtype=torch.float32)[:, None]
        table = _TABLES[key] = ((levels[None] - mean) / std).to(device)
    return table


def preprocess_frame(frame: np.ndarray, size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """HxWx3 uint8 -> (3, size, size) float32 normalized on ``device``, the way the reference prepares
    video frames (PIL bicubic resize of the 8-bit image, then /255 in float64 and ImageNet mean/std in
    float32), bit for bit.

    Every output value is one of 256 per channel, so it is looked up in a table rather than computed
    (about half the work after the resize; the PIL resize is the rest); on a GPU the 8-bit frame is
    what crosses the bus (3 MiB at 1024 px, not 12) and the lookup runs there."""
    from PIL import Image

    device = torch.device(device)
    resized = np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BICUBIC))
    levels = torch.from_numpy(np.ascontiguousarray(resized.transpose(2, 0, 1)))  # (3, S, S) uint8
    return torch.gather(_normalize_table(device), 1, levels.to(device).reshape(3, -1).long()).view(
        3, size, size
    )


# --- prompts ---------------------------------------------------------------------------------


def transform_coords(
    coords: torch.Tensor, orig_hw: tuple[int, int], size: int, normalize: bool = True
) -> torch.Tensor:
    """(..., 2) (x, y) coordinates -> the model's size x size frame.

    With ``normalize`` the input is in pixels of the original (H, W) image; otherwise it is
    already normalized to [0, 1].
    """
    if normalize:
        h, w = orig_hw
        coords = torch.stack([coords[..., 0] / w, coords[..., 1] / h], dim=-1)
    return coords * size


def transform_boxes(
    boxes: torch.Tensor, orig_hw: tuple[int, int], size: int, normalize: bool = True
) -> torch.Tensor:
    """(B, 4) or (4,) x0, y0, x1, y1 boxes -> (B, 2, 2) corners in the model frame."""
    return transform_coords(boxes.reshape(-1, 2, 2), orig_hw, size, normalize)


# --- masks -----------------------------------------------------------------------------------

_EIGHT = np.ones((3, 3), dtype=bool)


def connected_components(masks: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components of binary masks (N, H, W) (any leading shape).

    Returns labels (0 on background, 1..K per mask) and, per pixel, the area of its component
    (0 on background), both int32 of the input's shape. Runs on the CPU with scipy.
    """
    from scipy import ndimage

    m = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    m = m.astype(bool, copy=False)
    shape = m.shape
    flat = m.reshape(-1, shape[-2], shape[-1])
    labels = np.zeros(flat.shape, dtype=np.int32)
    areas = np.zeros(flat.shape, dtype=np.int32)
    for i, mask in enumerate(flat):
        if not mask.any():
            continue
        lab, n = ndimage.label(mask, structure=_EIGHT)
        counts = np.bincount(lab.ravel(), minlength=n + 1).astype(np.int32)
        counts[0] = 0
        labels[i] = lab
        areas[i] = counts[lab]
    return labels.reshape(shape), areas.reshape(shape)


def small_regions(logits: torch.Tensor, max_area: float, threshold: float, foreground: bool) -> torch.Tensor:
    """Bool mask of the small connected regions of thresholded (..., H, W) logits.

    ``foreground=False``: holes, components of ``logits <= threshold`` with area <= max_area.
    ``foreground=True``: sprinkles, components of ``logits > threshold`` with area <= max_area.
    """
    region = logits > threshold if foreground else logits <= threshold
    _, areas = connected_components(region)
    return torch.from_numpy((areas > 0) & (areas <= max_area)).to(logits.device)


def fill_small_regions(
    logits: torch.Tensor, max_area: float, threshold: float, foreground: bool, value: float
) -> torch.Tensor:
    """Overwrite the :func:`small_regions` of ``logits`` with ``value`` (no-op for max_area <= 0)."""
    if max_area <= 0:
        return logits
    small = small_regions(logits, max_area, threshold, foreground)
    return torch.where(small, torch.as_tensor(value, dtype=logits.dtype, device=logits.device), logits)


def clean_small_regions(
    low_res: torch.Tensor,
    mask_threshold: float = 0.0,
    max_hole_area: float = 0.0,
    max_sprinkle_area: float = 0.0,
) -> torch.Tensor:
    """Fill small holes (set to threshold + 10) and remove small sprinkles (threshold - 10) in
    (..., h, w) logits, as the reference does with its CUDA kernel; here on the CPU. Both are judged on
    the incoming mask, so a ring around a filled hole still counts as a ring."""
    masks = low_res.float()
    holes = small_regions(masks, max_hole_area, mask_threshold, False) if max_hole_area > 0 else None
    sprinkles = (
        small_regions(masks, max_sprinkle_area, mask_threshold, True) if max_sprinkle_area > 0 else None
    )
    if holes is not None:
        masks = torch.where(holes, torch.as_tensor(mask_threshold + 10.0), masks)
    if sprinkles is not None:
        masks = torch.where(sprinkles, torch.as_tensor(mask_threshold - 10.0), masks)
    return masks


def postprocess_masks(
    low_res: torch.Tensor,
    orig_hw: tuple[int, int],
    mask_threshold: float = 0.0,
    max_hole_area: float = 0.0,
    max_sprinkle_area: float = 0.0,
    binary: bool = False,
    compiled: bool = False,
) -> torch.Tensor:
    """(B, M, h, w) low-res logits -> (B, M, H, W) logits at the original resolution, after
    :func:`clean_small_regions` at low resolution; with ``binary``, float32 0/1 masks (logits above
    ``mask_threshold``) from :func:`upsample_threshold` instead (``compiled``: see there)."""
    masks = clean_small_regions(low_res, mask_threshold, max_hole_area, max_sprinkle_area)
    if binary:
        return upsample_threshold(masks, orig_hw, mask_threshold, compiled=compiled)
    return F.interpolate(masks, size=tuple(orig_hw), mode="bilinear", align_corners=False)
