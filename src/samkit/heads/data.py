"""Training data for heads: images with a class map (0 background, i + 1 for class ``classes[i]``),
and the on-disk cache of image embeddings (the encoder runs once per image and augmentation)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .._files import atomic_write
from .model import HeadError

AUGMENTATIONS = ("hflip", "vflip", "rot180")


@dataclass
class ClassImage:
    name: str
    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) uint8: 0 background, i + 1 = classes[i]


class ClassImages:
    """Images and class maps from ``coco:ANNOTATIONS.json:IMAGE_DIR`` (the categories named in
    ``classes``; other objects are background) or ``folder:IMAGE_DIR:MASK_DIR`` (every object is the
    one class given)."""

    def __init__(self, spec: str, classes: list[str]) -> None:
        from ..train.data import CocoImages, DataError, parse_data_spec

        self.spec, self.classes = str(spec), list(classes)
        kind = self.spec.split(":", 1)[0].strip().lower()
        if kind not in ("coco", "folder"):
            raise HeadError(
                f"{spec}: heads train on images: coco:ANNOTATIONS.json:IMAGE_DIR or folder:IMAGE_DIR:MASK_DIR"
            )
        try:
            if kind == "folder" and len(self.classes) != 1:
                raise HeadError(
                    f"{spec}: a mask folder has no class names; train one class (--classes NAME) on it"
                )
            self.dataset = parse_data_spec(
                self.spec, max_objects=1_000_000, **({"categories": self.classes} if kind == "coco" else {})
            )
        except DataError as e:
            raise HeadError(str(e)) from None
        if isinstance(self.dataset, CocoImages):
            ids = {}
            for _im, anns in self.dataset.items:
                for a in anns:
                    ids.setdefault(a.get("category_id"), 0)
                    ids[a.get("category_id")] += 1
            names = {}
            import json

            cats = json.loads(self.dataset.json_path.read_text()).get("categories") or []
            for c in cats:
                names[c.get("id")] = str(c.get("name"))
            self._class_of = {
                cid: self.classes.index(names[cid]) + 1 for cid in ids if names.get(cid) in self.classes
            }
            missing = [c for c in self.classes if c not in {names.get(cid) for cid in ids}]
            if missing:
                raise HeadError(
                    f"{spec}: no mask of class {missing[0]!r} (no usable annotation of that category)"
                )

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int) -> ClassImage:
        from ..train.data import CocoImages, DataError, _read_image

        try:
            if isinstance(self.dataset, CocoImages):
                im, anns = self.dataset.items[index]
                path = self.dataset.image_dir / str(im["file_name"])
                rgb = _read_image(path)
                h, w = rgb.shape[:2]
                labels = np.zeros((h, w), np.uint8)
                # larger objects first, so that smaller ones lying on them stay visible
                decoded = [
                    (self.dataset._decode(a, h, w, path), self._class_of[a["category_id"]]) for a in anns
                ]
                for mask, cls in sorted(decoded, key=lambda d: -int(d[0].sum())):
                    labels[mask] = cls
                return ClassImage(str(im["file_name"]), rgb, labels)
            raw = self.dataset.load_raw(index, torch.Generator().manual_seed(0))
            rgb = raw.frames[0].permute(1, 2, 0).contiguous().numpy()
            labels = raw.masks[0].any(dim=0).numpy().astype(np.uint8)
            return ClassImage(raw.name, rgb, labels)
        except DataError as e:
            raise HeadError(str(e)) from None


def augment(image: np.ndarray, labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """One of the fixed augmentations (``none``, ``hflip``, ``vflip``, ``rot180``) of an image and its
    class map."""
    if name == "none":
        return image, labels
    if name == "hflip":
        return image[:, ::-1].copy(), labels[:, ::-1].copy()
    if name == "vflip":
        return image[::-1].copy(), labels[::-1].copy()
    if name == "rot180":
        return image[::-1, ::-1].copy(), labels[::-1, ::-1].copy()
    raise HeadError(f"unknown augmentation {name!r}: one of {', '.join(AUGMENTATIONS)}")


def default_cache_dir() -> Path:
    base = os.environ.get("SAMKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "samkit")
    return Path(base) / "embeddings"


class EmbeddingCache:
    """Image embeddings on disk, keyed by the model (variant, image size, checkpoint hash) and the
    image's bytes: ``root/<model key>/<image hash>.pt`` with the embedding and high-resolution
    features in float16. :attr:`encoded` counts encoder calls, :attr:`hits` cache reads."""

    def __init__(self, root: str | os.PathLike, model, checkpoint_sha256: str | None = None) -> None:
        self.model = model
        precision = getattr(getattr(model, "policy", None), "encoder", "fp32")  # the embeddings' dtype
        key = f"{model.cfg.name}-{model.cfg.image_size}-{precision}-{(checkpoint_sha256 or 'unknown')[:16]}"
        self.root = Path(root) / key
        self.root.mkdir(parents=True, exist_ok=True)
        self.encoded = 0
        self.hits = 0

    @staticmethod
    def image_key(image: np.ndarray) -> str:
        h = hashlib.sha256()
        h.update(repr((image.shape, str(image.dtype))).encode())
        h.update(np.ascontiguousarray(image).tobytes())
        return h.hexdigest()

    def path_for(self, image: np.ndarray) -> Path:
        """The cache file of an image's embedding (there once :meth:`get` has run)."""
        return self.root / f"{self.image_key(image)}.pt"

    @staticmethod
    def read(path: Path) -> tuple[torch.Tensor, list[torch.Tensor]]:
        doc = torch.load(path, map_location="cpu", weights_only=True)
        return doc["embed"], list(doc["high_res"])

    def get(self, image: np.ndarray) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """(1, C, h, w) embedding and high-res features (float16, CPU) of an RGB image."""
        from .. import transforms as T

        path = self.path_for(image)
        if path.is_file():
            try:
                embed, high = self.read(path)
                self.hits += 1
                return embed, high
            except Exception:  # a damaged entry is recomputed
                path.unlink(missing_ok=True)
        dev = next(self.model.parameters()).device
        with torch.inference_mode():
            batch = T.preprocess_images([image], self.model.cfg.image_size, dev)
            embed, high = self.model.encode_images(batch)
        self.encoded += 1
        doc = {"embed": embed.half().cpu(), "high_res": [f.half().cpu() for f in high]}
        atomic_write(path, lambda tmp: torch.save(doc, tmp))
        return doc["embed"], doc["high_res"]
