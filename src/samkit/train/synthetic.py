"""Generated training data: textured shapes on textured backgrounds, with their masks. Images hold
1-3 shapes (discs, rectangles, triangles); videos move them along straight paths so they pass in
front of each other (the front shape occludes the back one in the masks too). Deterministic for a
seed, so a benchmark or a test makes the same set every time; :func:`write_mask_folder` and
:func:`write_davis` save a set in the on-disk layouts ``samkit train`` reads."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from .augment import AugmentSettings
from .data import RawSample, TrainDataset, derive_generator

SHAPES = ("disc", "rect", "triangle")


def _texture(g: torch.Generator, h: int, w: int) -> torch.Tensor:
    """(3, h, w) float in [0, 1]: a base colour, stripes of a random period and angle, and noise."""
    base = torch.rand(3, 1, 1, generator=g) * 0.8 + 0.1
    period = float(torch.randint(4, 16, (), generator=g))
    angle = float(torch.rand((), generator=g)) * math.pi
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    stripes = torch.sin((xs * math.cos(angle) + ys * math.sin(angle)) * (2 * math.pi / period))
    tint = torch.rand(3, 1, 1, generator=g) * 0.3
    noise = torch.rand(3, h, w, generator=g) * 0.15
    return (base + tint * stripes + noise).clamp(0, 1)


def _shape_mask(kind: str, cx: float, cy: float, r: float, h: int, w: int) -> torch.Tensor:
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    if kind == "disc":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= r * r
    if kind == "rect":
        return ((xs - cx).abs() <= r) & ((ys - cy).abs() <= 0.7 * r)
    # an upright triangle: inside the three half-planes
    top, left, right = (cx, cy - r), (cx - r, cy + 0.8 * r), (cx + r, cy + 0.8 * r)

    def side(a, b):
        return (b[0] - a[0]) * (ys - a[1]) - (b[1] - a[1]) * (xs - a[0])

    s1, s2, s3 = side(top, left), side(left, right), side(right, top)
    return ((s1 <= 0) & (s2 <= 0) & (s3 <= 0)) | ((s1 >= 0) & (s2 >= 0) & (s3 >= 0))


def render(
    g: torch.Generator, size: int, num_frames: int, num_objects: int, motion: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """One clip: frames (T, 3, size, size) uint8 and masks (T, O, size, size) bool. Objects are
    drawn back to front; each moves ``motion`` x size pixels per frame in a random direction."""
    background = _texture(g, size, size)
    objs = []
    for _ in range(num_objects):
        kind = SHAPES[int(torch.randint(len(SHAPES), (), generator=g))]
        r = size * (0.1 + 0.12 * float(torch.rand((), generator=g)))
        cx, cy = (float(v) * (size - 2 * r) + r for v in torch.rand(2, generator=g))
        heading = float(torch.rand((), generator=g)) * 2 * math.pi
        objs.append((kind, r, cx, cy, heading, _texture(g, size, size)))
    frames = torch.empty(num_frames, 3, size, size)
    masks = torch.zeros(num_frames, num_objects, size, size, dtype=torch.bool)
    for t in range(num_frames):
        img = background.clone()
        covered = torch.zeros(size, size, dtype=torch.bool)
        visible = []
        for kind, r, cx, cy, heading, tex in objs:
            # bounce off the borders so the shape stays in view
            x = cx + math.cos(heading) * motion * size * t
            y = cy + math.sin(heading) * motion * size * t
            x = r + abs((x - r) % (2 * (size - 2 * r)) - (size - 2 * r)) if size > 2 * r else cx
            y = r + abs((y - r) % (2 * (size - 2 * r)) - (size - 2 * r)) if size > 2 * r else cy
            m = _shape_mask(kind, x, y, r, size, size)
            img = torch.where(m, tex, img)
            visible.append(m)
        # later objects are in front: an earlier object's mask loses what they cover
        for o in range(num_objects - 1, -1, -1):
            masks[t, o] = visible[o] & ~covered
            covered |= visible[o]
        frames[t] = img
    return (frames * 255).round().to(torch.uint8), masks


class Shapes(TrainDataset):
    """``n`` generated images (``num_frames=1``) or clips of moving, occluding shapes, 1 to
    ``max_objects`` per item, at ``source_size`` pixels before augmentation."""

    def __init__(
        self,
        n: int,
        num_frames: int = 1,
        max_objects: int = 3,
        source_size: int = 128,
        data_seed: int = 0,
        augment: AugmentSettings | None = None,
        seed: int = 0,
        motion: float = 0.03,
    ) -> None:
        super().__init__(
            augment=augment if augment is not None else AugmentSettings(size=source_size), seed=seed
        )
        self.n, self.num_frames, self.max_objects = n, num_frames, max_objects
        self.source_size, self.data_seed, self.motion = source_size, data_seed, motion

    def __len__(self) -> int:
        return self.n

    def load(self, index: int, generator: torch.Generator) -> RawSample:
        g = derive_generator("shapes", self.data_seed, index)  # the item itself does not vary by epoch
        k = 1 + int(torch.randint(self.max_objects, (), generator=g))
        motion = self.motion if self.num_frames > 1 else 0.0
        frames, masks = render(g, self.source_size, self.num_frames, k, motion)
        keep = [o for o in range(k) if masks[0, o].any()]  # objects visible in the first frame
        return RawSample(frames, masks[:, keep], keep, f"shapes-{index}")


def write_mask_folder(dataset: Shapes, root: str | Path) -> tuple[Path, Path]:
    """Save images as JPEG + instance-id PNG (value = object id + 1) in ``root/images``,
    ``root/masks``; returns the two folders."""
    from PIL import Image

    root = Path(root)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for i in range(len(dataset)):
        raw = dataset.load(i, torch.Generator())
        Image.fromarray(raw.frames[0].permute(1, 2, 0).numpy()).save(images / f"{i:05d}.jpg", quality=95)
        ids = np.zeros(raw.masks.shape[-2:], dtype=np.uint8)
        for o in range(raw.masks.shape[1]):
            ids[raw.masks[0, o].numpy()] = o + 1
        Image.fromarray(ids).save(masks / f"{i:05d}.png")
    return images, masks


def write_davis(dataset: Shapes, root: str | Path) -> tuple[Path, Path]:
    """Save clips in the DAVIS layout (``JPEGImages/<video>/<frame>.jpg``, palette PNGs in
    ``Annotations/<video>/<frame>.png``); returns the two folders."""
    from PIL import Image

    root = Path(root)
    jpeg, ann = root / "JPEGImages", root / "Annotations"
    palette = [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 0] + [128] * (256 * 3 - 15)
    for i in range(len(dataset)):
        raw = dataset.load(i, torch.Generator())
        (jpeg / f"v{i:03d}").mkdir(parents=True, exist_ok=True)
        (ann / f"v{i:03d}").mkdir(parents=True, exist_ok=True)
        for t in range(raw.frames.shape[0]):
            Image.fromarray(raw.frames[t].permute(1, 2, 0).numpy()).save(
                jpeg / f"v{i:03d}" / f"{t:05d}.jpg", quality=95
            )
            ids = np.zeros(raw.masks.shape[-2:], dtype=np.uint8)
            for o in range(raw.masks.shape[1]):
                ids[raw.masks[t, o].numpy()] = o + 1
            png = Image.fromarray(ids, mode="P")
            png.putpalette(palette)
            png.save(ann / f"v{i:03d}" / f"{t:05d}.png")
    return jpeg, ann


def write_coco_shapes(
    n: int,
    root: str | Path,
    classes: tuple[str, ...] = ("disc", "rect"),
    size: int = 128,
    max_objects: int = 4,
    seed: int = 0,
) -> tuple[Path, Path]:
    """``n`` images of textured shapes with a COCO instances file whose categories are the shape
    kinds in ``classes`` (``disc``, ``rect``, ``triangle``); shapes of other kinds are drawn as
    distractors and not annotated. Returns (annotations json, image folder)."""
    import json

    from PIL import Image
    from pycocotools import mask as mask_utils

    for c in classes:
        if c not in SHAPES:
            raise ValueError(f"unknown shape {c!r}: one of {', '.join(SHAPES)}")
    root = Path(root)
    images_dir = root / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    doc: dict = {
        "images": [],
        "annotations": [],
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
    }
    for i in range(n):
        g = derive_generator("coco-shapes", seed, i)
        img = _texture(g, size, size)
        k = 1 + int(torch.randint(max_objects, (), generator=g))
        drawn = []
        for _ in range(k):
            kind = SHAPES[int(torch.randint(len(SHAPES), (), generator=g))]
            r = size * (0.08 + 0.1 * float(torch.rand((), generator=g)))
            cx, cy = (float(v) * (size - 2 * r) + r for v in torch.rand(2, generator=g))
            m = _shape_mask(kind, cx, cy, r, size, size)
            img = torch.where(m, _texture(g, size, size), img)
            drawn = [(kd, mm & ~m) for kd, mm in drawn] + [(kind, m)]
        name = f"{i:05d}.jpg"
        rgb = (img * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
        Image.fromarray(rgb).save(images_dir / name, quality=95)
        doc["images"].append({"id": i + 1, "file_name": name, "height": size, "width": size})
        for kind, m in drawn:
            if kind not in classes or not m.any():
                continue
            rle = mask_utils.encode(np.asfortranarray(m.numpy().astype(np.uint8)))
            doc["annotations"].append(
                {
                    "id": len(doc["annotations"]) + 1,
                    "image_id": i + 1,
                    "category_id": classes.index(kind) + 1,
                    "segmentation": {"size": [size, size], "counts": rle["counts"].decode()},
                    "area": int(m.sum()),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                    "iscrowd": 0,
                }
            )
    ann = root / "annotations.json"
    ann.write_text(json.dumps(doc))
    return ann, images_dir
