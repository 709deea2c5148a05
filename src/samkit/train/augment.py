"""Training augmentations for images and video clips, on tensors.

The pipeline is the reference's video training transforms (``sam2.1_hiera_b+_MOSE_finetune.yaml``),
in this order:

1. horizontal flip, p = 0.5, the same for every frame;
2. random affine: rotation uniform in +-25 degrees and an x-shear uniform in +-20 degrees about the
   image centre (bilinear for images, filled with the ImageNet mean; nearest for masks), the same for
   every frame; when it would empty the first frame's mask of an object that was visible there, new
   parameters are drawn (``affine_tries`` times in all) and after that the clip is left unwarped;
3. resize to a square ``size`` (bilinear, antialiased when shrinking, for images; nearest for masks);
4. colour jitter (brightness 0.1, contrast 0.03, saturation 0.03), the same for every frame;
5. grayscale, p = 0.05, the same for every frame;
6. colour jitter (brightness 0.1, contrast 0.05, saturation 0.05), drawn for each frame;
7. ImageNet mean/std normalization.

Steps 2 and 3 run in the other order here: the resize happens first and the affine is warped at the
training size, with its matrix conjugated by the resize so that the geometry is the one the reference
gets by warping at the original resolution (a rotation of the original image, then a squash to the
square). Warping ``size`` x ``size`` pixels rather than a full-resolution video is much cheaper.

All randomness comes from the ``torch.Generator`` passed in, drawn in a fixed order, so a seeded
generator gives the same result on every run (what an exact resume needs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from .batch import IMAGENET_MEAN, IMAGENET_STD


def _kornia():
    """kornia, imported when an augmentation first needs it (reading data for evaluation does not)."""
    try:
        import kornia
    except ImportError as e:  # pragma: no cover - kornia is in the train extra
        raise ImportError("samkit.train's augmentations need kornia: pip install 'samkit[train]'") from e
    return kornia


__all__ = ["AugmentSettings", "augment"]


@dataclass(frozen=True)
class AugmentSettings:
    """Parameters of :func:`augment`; the defaults are the reference's video fine-tuning transforms.

    size: the square training size; hflip: probability of a horizontal flip; degrees / shear: the
    rotation and x-shear ranges (+-, in degrees) of the random affine; affine_tries: draws of affine
    parameters before the clip is left unwarped (an affine that empties a first-frame object is
    rejected); brightness / contrast / saturation: the clip-wide colour jitter (factors drawn in
    [1 - x, 1 + x]); grayscale: probability of turning the clip gray; frame_brightness /
    frame_contrast / frame_saturation: the colour jitter drawn again for each frame.
    """

    size: int = 1024
    hflip: float = 0.5
    degrees: float = 25.0
    shear: float = 20.0
    affine_tries: int = 3
    brightness: float = 0.1
    contrast: float = 0.03
    saturation: float = 0.03
    grayscale: float = 0.05
    frame_brightness: float = 0.1
    frame_contrast: float = 0.05
    frame_saturation: float = 0.05

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"size must be a positive int, got {self.size!r}")
        for name in ("hflip", "grayscale"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {p!r}")
        for name in (
            "degrees",
            "shear",
            "brightness",
            "contrast",
            "saturation",
            "frame_brightness",
            "frame_contrast",
            "frame_saturation",
        ):
            v = getattr(self, name)
            if not v >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {v!r}")
        if not 0.0 <= self.shear < 90.0:
            raise ValueError(f"shear must be below 90 degrees, got {self.shear!r}")
        if self.affine_tries < 1:
            raise ValueError(f"affine_tries must be >= 1, got {self.affine_tries!r}")

    @classmethod
    def none(cls, size: int = 1024) -> AugmentSettings:
        """Only the resize and the normalization: deterministic (validation, inference-like inputs)."""
        return cls(
            size=size,
            hflip=0.0,
            degrees=0.0,
            shear=0.0,
            brightness=0.0,
            contrast=0.0,
            saturation=0.0,
            grayscale=0.0,
            frame_brightness=0.0,
            frame_contrast=0.0,
            frame_saturation=0.0,
        )

    def with_size(self, size: int) -> AugmentSettings:
        """The same settings at another training size."""
        return replace(self, size=size)


def _uniform(generator: torch.Generator | None, low: float = 0.0, high: float = 1.0) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator, dtype=torch.float64))


def _resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """(T, 3, H, W) float in [0, 1] -> (T, 3, size, size): bilinear, antialiased when shrinking."""
    h, w = images.shape[-2:]
    if (h, w) == (size, size):
        return images
    out = F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=size < h or size < w
    )
    return out.clamp_(0.0, 1.0)


def _resize_masks(masks: torch.Tensor, size: int) -> torch.Tensor:
    """(T, O, H, W) bool -> (T, O, size, size), nearest (pixel-centre aligned)."""
    h, w = masks.shape[-2:]
    if (h, w) == (size, size):
        return masks
    if masks.shape[1] == 0:
        return masks.new_zeros((masks.shape[0], 0, size, size))
    out = F.interpolate(masks.to(torch.uint8), size=(size, size), mode="nearest-exact")
    return out.bool()


def _affine_matrix(
    angle: float, shear: float, orig_hw: tuple[int, int], size: int, dtype: torch.dtype
) -> torch.Tensor:
    """(1, 2, 3) pixel matrix at the training size of a rotation by ``angle`` and an x-shear by
    ``shear`` (degrees) about the centre of the original (H, W) image, conjugated by the resize."""
    h, w = orig_hw
    center = torch.tensor([[(w - 1) / 2.0, (h - 1) / 2.0]], dtype=torch.float64)
    m = _kornia().geometry.transform.get_affine_matrix2d(
        translations=torch.zeros(1, 2, dtype=torch.float64),
        center=center,
        scale=torch.ones(1, 2, dtype=torch.float64),
        angle=torch.tensor([angle], dtype=torch.float64),
        sx=torch.tensor([math.radians(shear)], dtype=torch.float64),
        sy=torch.zeros(1, dtype=torch.float64),
    )[0]
    # the resize maps the pixel centre x to (x + 0.5) * size / w - 0.5 (align_corners=False)
    sx, sy = size / w, size / h
    d = torch.tensor(
        [[sx, 0.0, 0.5 * sx - 0.5], [0.0, sy, 0.5 * sy - 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64
    )
    m = d @ m @ torch.linalg.inv(d)
    return m[None, :2, :].to(dtype)


def _warp_masks(masks: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    size = masks.shape[-1]
    warped = _kornia().geometry.transform.warp_affine(
        masks.float(), matrix, (size, size), mode="nearest", padding_mode="zeros", align_corners=True
    )
    return warped > 0.5


def _random_affine(
    images: torch.Tensor,
    masks: torch.Tensor,
    orig_hw: tuple[int, int],
    settings: AugmentSettings,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    size = images.shape[-1]
    visible = masks[0].flatten(1).any(dim=1) if masks.shape[1] else torch.zeros(0, dtype=torch.bool)
    for _ in range(settings.affine_tries):
        angle = _uniform(generator, -settings.degrees, settings.degrees)
        shear = _uniform(generator, -settings.shear, settings.shear)
        matrix = _affine_matrix(angle, shear, orig_hw, size, images.dtype)
        if masks.shape[1]:
            first = _warp_masks(masks[:1], matrix)[0]
            if not bool(first.flatten(1).any(dim=1)[visible].all()):
                continue  # an object visible in the first frame would vanish: draw again
            warped_masks = (
                torch.cat([first[None], _warp_masks(masks[1:], matrix)]) if len(masks) > 1 else first[None]
            )
        else:
            warped_masks = masks
        # outside the image: the ImageNet mean, blended in at the border as a "fill" padding does
        # (warping image - fill with zero padding and adding fill back is that blend, and cheaper)
        fill = torch.tensor(IMAGENET_MEAN, dtype=images.dtype).view(1, 3, 1, 1)
        warped_images = _kornia().geometry.transform.warp_affine(
            images - fill, matrix, (size, size), mode="bilinear", padding_mode="zeros", align_corners=True
        )
        return warped_images.add_(fill).clamp_(0.0, 1.0), warped_masks
    return images, masks  # no acceptable affine: leave the clip as it is (as the reference does)


def _draw_jitter(
    brightness: float, contrast: float, saturation: float, generator: torch.Generator | None
) -> list[tuple[int, float]] | None:
    """torchvision's ColorJitter parameters (no hue): the three adjustments in a random order, each
    factor uniform in [max(0, 1 - x), 1 + x]; None when all three ranges are empty."""
    if brightness <= 0 and contrast <= 0 and saturation <= 0:
        return None
    order = torch.randperm(3, generator=generator).tolist()
    ranges = (brightness, contrast, saturation)
    factors = [_uniform(generator, max(0.0, 1.0 - x), 1.0 + x) for x in ranges]
    return [(op, factors[op]) for op in order if ranges[op] > 0]


def _apply_jitter(images: torch.Tensor, params: list[tuple[int, float]] | None) -> torch.Tensor:
    if params is None:
        return images
    enhance = _kornia().enhance
    for op, factor in params:
        if op == 0:
            images = enhance.adjust_brightness_accumulative(images, factor)
        elif op == 1:
            images = enhance.adjust_contrast_with_mean_subtraction(images, factor)
        else:
            images = enhance.adjust_saturation_with_gray_subtraction(images, factor)
    return images


def augment(
    frames_uint8: torch.Tensor,
    masks: torch.Tensor,
    settings: AugmentSettings | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a clip: (T, 3, H, W) uint8 frames and (T, O, H, W) bool masks -> (T, 3, S, S) float32
    frames normalized with the ImageNet mean/std and (T, O, S, S) bool masks (S = ``settings.size``).

    ``settings`` defaults to :class:`AugmentSettings` (the reference's training transforms); the
    random draws come from ``generator`` (the global generator when None).
    """
    if not isinstance(frames_uint8, torch.Tensor) or frames_uint8.dtype != torch.uint8:
        raise TypeError(
            f"frames must be a uint8 tensor, got {getattr(frames_uint8, 'dtype', type(frames_uint8))}"
        )
    if frames_uint8.dim() != 4 or frames_uint8.shape[1] != 3:
        raise ValueError(f"frames must be (T, 3, H, W), got {tuple(frames_uint8.shape)}")
    t, _, h, w = frames_uint8.shape
    if masks.dim() != 4 or masks.shape[0] != t or tuple(masks.shape[2:]) != (h, w):
        raise ValueError(f"masks must be (T={t}, O, {h}, {w}), got {tuple(masks.shape)}")
    if t == 0 or h == 0 or w == 0:
        raise ValueError(f"empty clip: frames of shape {tuple(frames_uint8.shape)}")
    s = settings if settings is not None else AugmentSettings()
    g = generator
    masks = masks.bool()

    flip = s.hflip > 0 and _uniform(g) < s.hflip
    images = frames_uint8.flip(-1) if flip else frames_uint8
    if flip:
        masks = masks.flip(-1)

    images = _resize_images(images.float().div_(255.0), s.size)
    masks = _resize_masks(masks, s.size)

    if s.degrees > 0 or s.shear > 0:
        images, masks = _random_affine(images, masks, (h, w), s, g)

    clip_jitter = _draw_jitter(s.brightness, s.contrast, s.saturation, g)
    gray = s.grayscale > 0 and _uniform(g) < s.grayscale
    frame_jitter = [
        _draw_jitter(s.frame_brightness, s.frame_contrast, s.frame_saturation, g) for _ in range(t)
    ]

    # the colour steps frame by frame: the same result as on the whole clip, and cache-friendlier
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    out = torch.empty((t, 3, s.size, s.size), dtype=torch.float32)
    for i in range(t):
        x = _apply_jitter(images[i : i + 1], clip_jitter)
        if gray:
            x = _kornia().color.rgb_to_grayscale(x).expand(-1, 3, -1, -1)
        x = _apply_jitter(x, frame_jitter[i])
        torch.sub(x, mean, out=out[i : i + 1]).div_(std)
    return out, masks.contiguous()
