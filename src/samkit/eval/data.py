"""Images with ground-truth objects for the image evaluations, read by the training readers
(``coco:ANNOTATIONS.json:IMAGE_DIR`` or ``folder:IMAGE_DIR:MASK_DIR``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from .errors import EvalError


@dataclass
class EvalImage:
    """One image (H, W, 3) uint8 RGB and its objects' masks (O, H, W) bool."""

    name: str
    image: np.ndarray
    masks: np.ndarray
    object_ids: list[int]


class ImageSet:
    """The images of a ``--data`` spec (or a samkit.train dataset of images), every object of each
    (``max_objects``: at most that many per image, the same ones on every run), at most
    ``max_images`` images (the first ones)."""

    def __init__(self, data, max_objects: int | None = None, max_images: int | None = None) -> None:
        from ..train.data import DataError, TrainDataset, parse_data_spec

        if max_objects is not None and max_objects < 1:
            raise EvalError(f"max_objects must be >= 1, got {max_objects}")
        if max_images is not None and max_images < 1:
            raise EvalError(f"max_images must be >= 1, got {max_images}")
        if isinstance(data, TrainDataset):
            dataset = data
        else:
            if str(data).split(":", 1)[0].strip().lower() in ("davis", "sav"):
                raise EvalError(
                    f"{data}: a video dataset; image evaluations take coco:ANNOTATIONS.json:IMAGE_DIR or "
                    "folder:IMAGE_DIR:MASK_DIR (score videos with samkit eval vos)"
                )
            try:
                dataset = parse_data_spec(str(data), max_objects=max_objects or 1_000_000)
            except DataError as e:
                raise EvalError(str(e)) from None
        if dataset.num_frames != 1:
            raise EvalError("image evaluations need a dataset of images, not videos")
        self.dataset = dataset
        self.spec = str(data) if not isinstance(data, TrainDataset) else type(data).__name__
        n = len(dataset)
        self.count = min(n, max_images) if max_images else n

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[EvalImage]:
        from ..train.data import DataError, derive_generator

        for i in range(self.count):
            try:
                raw = self.dataset.load_raw(i, derive_generator("eval", i))
            except DataError as e:
                raise EvalError(str(e)) from None
            yield EvalImage(
                name=raw.name or str(i),
                image=raw.frames[0].permute(1, 2, 0).contiguous().numpy(),
                masks=raw.masks[0].numpy().astype(bool),
                object_ids=list(raw.object_ids),
            )
