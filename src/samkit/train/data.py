"""Training data: a dataset base class, readers for common layouts, video clip sampling, a mixed
dataset that batches each source on its own, and the ``--data`` spec parser.

- :class:`TrainDataset`: subclass it with ``__len__`` and ``load(index, generator)`` returning a
  :class:`RawSample` (uint8 frames, bool masks); ``dataset[i]`` augments it (:func:`augment`) into a
  :class:`~samkit.train.batch.Sample`. Every random choice for item ``i`` (frames, objects,
  augmentation) comes from a generator derived from ``(seed, epoch, i)``, so an item is the same
  wherever and whenever it is loaded in an epoch (exact resume, any number of workers).
- readers: :class:`CocoImages` (COCO instance JSON), :class:`MaskFolderImages` (images + PNG
  masks), :class:`DavisVideos` (DAVIS / MOSE / YouTube-VOS style JPEG + palette PNG folders),
  :class:`SavVideos` (SA-V mp4 + ``_manual.json`` masklets).
- :class:`MixedDataset`: whole batches, each from one dataset with its own batch size (images and
  videos never share a batch), in an order fixed by ``(seed, epoch)`` and sharded over ranks.
- :func:`parse_data_spec` (``coco:ANN.json:IMAGES``, ``folder:IMAGES:MASKS``, ``davis:JPEG:ANN``,
  ``sav:DIR``) and :func:`split` (a deterministic validation split).

Problems with the data raise :class:`DataError` naming the file; a reader built with
``skip_bad=True`` skips such samples instead and lists the messages in ``dataset.skipped``.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .._annotations import frame_key as _frame_key
from .._annotations import label_ids as _label_ids
from .._annotations import natural_key as _natural_key
from .._annotations import read_label_png
from .augment import AugmentSettings, augment
from .batch import Batch, Sample, collate

__all__ = [
    "CocoImages",
    "DataError",
    "DavisVideos",
    "MaskFolderImages",
    "MixedDataset",
    "RawSample",
    "SavVideos",
    "SubsetDataset",
    "TrainDataset",
    "derive_generator",
    "parse_data_spec",
    "split",
]

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
# random windows tried for a clip whose first frame shows an object, before the video is reported
MAX_WINDOW_TRIES = 50


class DataError(ValueError):
    """Training data that cannot be used (a missing or unreadable file, a bad annotation, a video that
    is too short, ...). The message names the file and, where it helps, the annotation."""


@dataclass
class RawSample:
    """What :meth:`TrainDataset.load` returns, before augmentation: frames (T, 3, H, W) uint8 RGB,
    masks (T, O, H, W) bool, the dataset's id of each of the O objects, and a name for messages."""

    frames: torch.Tensor
    masks: torch.Tensor
    object_ids: list[int]
    name: str = ""


def derive_generator(*keys: int | str) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded from a hash of ``keys`` (the same keys, the same stream)."""
    digest = hashlib.blake2b(repr(keys).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


def _randint(generator: torch.Generator, high: int) -> int:
    """Uniform in [0, high)."""
    return int(torch.randint(high, (), generator=generator))


def _choose(ids: Sequence[int], k: int, generator: torch.Generator) -> list[int]:
    """Up to ``k`` of ``ids`` at random (all of them when there are no more), in their original order."""
    if len(ids) <= k:
        return list(ids)
    picked = sorted(torch.randperm(len(ids), generator=generator)[:k].tolist())
    return [ids[j] for j in picked]


def _sample_window(
    positions: Sequence[int],
    t: int,
    reverse_prob: float,
    generator: torch.Generator,
    visible_in: Callable[[int], list[int]],
    failure: str,
) -> tuple[list[int], list[int]]:
    """Meta's RandomUniformSampler: ``t`` consecutive entries of ``positions`` at a random start
    (reversed with ``reverse_prob``), retried until an object is visible in the window's first entry
    (``visible_in``). Returns the window and those objects; after MAX_WINDOW_TRIES, DataError(failure)."""
    for _ in range(MAX_WINDOW_TRIES):
        start = _randint(generator, len(positions) - t + 1)
        order = list(positions[start : start + t])
        if reverse_prob > 0 and float(torch.rand((), generator=generator)) < reverse_prob:
            order.reverse()
        visible = visible_in(order[0])
        if visible:
            return order, visible
    raise DataError(failure)


def _read_image(path: Path) -> np.ndarray:
    """HxWx3 uint8 RGB, or a :class:`DataError` naming the file."""
    from ..transforms import load_image

    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        return load_image(path)
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read image {path}: {e}") from None


def _read_label_png(path: Path) -> np.ndarray:
    """A mask PNG as an (H, W) int32 array of labels (see :func:`samkit._annotations.read_label_png`);
    problems are a :class:`DataError` naming the file."""
    return read_label_png(path, DataError)


def _check_size(mask_hw: tuple[int, int], image_hw: tuple[int, int], mask_name: Any, image_name: Any) -> None:
    if tuple(mask_hw) != tuple(image_hw):
        raise DataError(
            f"mask {mask_name} is {mask_hw[1]}x{mask_hw[0]} but its image {image_name} is "
            f"{image_hw[1]}x{image_hw[0]} (width x height)"
        )


def _frames_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 arrays -> (T, 3, H, W) uint8."""
    return torch.from_numpy(np.ascontiguousarray(np.stack(frames))).permute(0, 3, 1, 2)


def _read_list(file_list: str | Path | Sequence[str] | None) -> list[str] | None:
    """Names from a text file (one a line, extensions dropped) or a sequence of names."""
    if file_list is None:
        return None
    if isinstance(file_list, (str, Path)):
        path = Path(file_list)
        if not path.is_file():
            raise DataError(f"file list not found: {path}")
        names = [line.strip() for line in path.read_text().splitlines()]
        return [Path(n).stem if Path(n).suffix else n for n in names if n]
    return [str(n) for n in file_list]


def _accepts_generator(fn: Any) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind == p.VAR_POSITIONAL for p in params)


class TrainDataset(torch.utils.data.Dataset):
    """Base class of the training datasets.

    Subclass it with ``__len__`` and ``load(index, generator)`` returning a :class:`RawSample`
    (``load(index)`` works too, for a dataset without random choices). ``dataset[i]`` loads item
    ``i`` and augments it with ``self.augment`` into a :class:`~samkit.train.batch.Sample`, ready for
    :func:`~samkit.train.batch.collate`.

    The generator given to ``load`` and to the augmentation is derived from ``(seed, epoch, i)``;
    call :meth:`set_epoch` at the start of each epoch (as with ``DistributedSampler``). The same item
    in the same epoch is therefore the same sample, whichever worker or run loads it.

    ``load`` reports bad data by raising :class:`DataError`. With ``skip_bad=True`` the item is
    replaced by the next loadable one (``i + 1``, ``i + 2``, ...) and the message is kept in
    :attr:`skipped` (once per message; with DataLoader workers each worker keeps its own list).

    ``num_frames`` is the frame count T of every sample (1 for images).
    """

    num_frames: int = 1

    def __init__(self, augment: AugmentSettings | None = None, seed: int = 0, skip_bad: bool = False) -> None:
        self.augment = augment if augment is not None else AugmentSettings()
        self.seed = int(seed)
        self.epoch = 0
        self.skip_bad = bool(skip_bad)
        self.skipped: list[str] = []
        self._skipped_set: set[str] = set()

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def load(self, index: int, generator: torch.Generator) -> RawSample:  # pragma: no cover - abstract
        """Item ``index`` before augmentation; random choices from ``generator``."""
        raise NotImplementedError

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def generator(self, index: int) -> torch.Generator:
        """The generator of item ``index`` in the current epoch."""
        return derive_generator("item", self.seed, self.epoch, int(index))

    # a file every process appends skipped items to (samkit.train.fit sets it to OUT/skipped.txt), so
    # items skipped in DataLoader workers are listed too
    skip_log: Path | None = None

    def _record_skip(self, message: str) -> None:
        if message not in self._skipped_set:
            self._skipped_set.add(message)
            self.skipped.append(message)
            logger.warning("skipped: %s", message)
            if self.skip_log is not None:
                with open(self.skip_log, "a") as f:
                    f.write(message.replace("\n", " ") + "\n")

    def _bad(self, message: str) -> None:
        """A problem found while indexing: raise, or with skip_bad record it (the caller drops the item)."""
        if not self.skip_bad:
            raise DataError(message)
        self._record_skip(message)

    def load_raw(self, index: int, generator: torch.Generator) -> RawSample:
        """``load`` with the generator when it takes one."""
        takes = self.__dict__.get("_load_takes_generator")
        if takes is None:
            takes = self._load_takes_generator = _accepts_generator(self.load)
        return self.load(index, generator) if takes else self.load(index)

    def __getitem__(self, index: int) -> Sample:
        n = len(self)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for a dataset of {n} items")
        index = int(index) % n
        g = self.generator(index)
        for attempt in range(n if self.skip_bad else 1):
            i = (index + attempt) % n
            try:
                raw = self.load_raw(i, g)
                if not isinstance(raw, RawSample):
                    raise TypeError(
                        f"{type(self).__name__}.load must return a RawSample, got {type(raw).__name__}"
                    )
                if raw.masks.dim() != 4 or raw.masks.shape[1] == 0:
                    raise DataError(f"{raw.name or f'item {i}'}: no objects")
                frames, masks = augment(raw.frames, raw.masks, self.augment, g)
                return Sample(frames, masks, [int(o) for o in raw.object_ids], raw.name)
            except DataError as e:
                if not self.skip_bad:
                    raise
                self._record_skip(str(e))
        raise DataError(f"{type(self).__name__}: none of the {n} items could be loaded (see .skipped)")


class SubsetDataset(TrainDataset):
    """Items ``indices`` of ``dataset``, with their own augmentation settings (by default the
    dataset's). Seed and skip_bad are the dataset's."""

    def __init__(
        self, dataset: TrainDataset, indices: Sequence[int], augment: AugmentSettings | None = None
    ) -> None:
        super().__init__(
            augment=augment if augment is not None else dataset.augment,
            seed=dataset.seed,
            skip_bad=dataset.skip_bad,
        )
        self.dataset = dataset
        self.indices = [int(i) for i in indices]
        self.num_frames = dataset.num_frames

    def __len__(self) -> int:
        return len(self.indices)

    def load(self, index: int, generator: torch.Generator) -> RawSample:
        return self.dataset.load_raw(self.indices[index], generator)


# --- images -------------------------------------------------------------------------------------


class CocoImages(TrainDataset):
    """COCO instance annotations: one sample per image (T = 1) with up to ``max_objects`` of its
    objects, chosen at random (as the reference's SA-1B loader samples masks); only the chosen
    objects' masks are decoded.

    Segmentations may be polygons, uncompressed RLE or compressed RLE. Crowd annotations
    (``iscrowd: 1``) mark regions of many instances, not one object, and are not used as objects.
    ``categories``: category names to keep (an unknown name is an error listing the known ones).
    Images without a usable annotation are left out; :attr:`num_unannotated` says how many.
    """

    def __init__(
        self,
        annotations_json: str | Path,
        image_dir: str | Path,
        max_objects: int = 3,
        categories: Sequence[str] | None = None,
        *,
        augment: AugmentSettings | None = None,
        seed: int = 0,
        skip_bad: bool = False,
    ) -> None:
        super().__init__(augment=augment, seed=seed, skip_bad=skip_bad)
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        self.json_path = Path(annotations_json)
        self.image_dir = Path(image_dir)
        self.max_objects = int(max_objects)
        if not self.json_path.is_file():
            raise DataError(f"COCO annotations not found: {self.json_path}")
        if not self.image_dir.is_dir():
            raise DataError(f"image folder not found: {self.image_dir}")
        try:
            data = json.loads(self.json_path.read_text())
        except json.JSONDecodeError as e:
            raise DataError(
                f"{self.json_path}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
            ) from None
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read {self.json_path}: {e}") from None
        if not isinstance(data, dict) or not isinstance(data.get("images"), list):
            raise DataError(f"{self.json_path}: not a COCO instances file (no 'images' list)")
        if not isinstance(data.get("annotations"), list):
            raise DataError(f"{self.json_path}: not a COCO instances file (no 'annotations' list)")

        category_names = {
            c.get("id"): str(c.get("name")) for c in data.get("categories") or [] if isinstance(c, dict)
        }
        wanted: set | None = None
        if categories is not None:
            by_name = {name: cid for cid, name in category_names.items()}
            unknown = [name for name in categories if name not in by_name]
            if unknown:
                known = ", ".join(sorted(by_name)) or "(none)"
                raise DataError(
                    f"{self.json_path}: unknown category {unknown[0]!r}; known categories: {known}"
                )
            wanted = {by_name[name] for name in categories}

        images: dict[Any, dict] = {}
        for k, im in enumerate(data["images"]):
            if not isinstance(im, dict) or "id" not in im or "file_name" not in im:
                self._bad(f"{self.json_path}: images[{k}] has no 'id' or 'file_name'")
                continue
            images[im["id"]] = im
        per_image: dict[Any, list[dict]] = {}
        self.num_crowd = 0
        for k, ann in enumerate(data["annotations"]):
            where = (
                f"{self.json_path}: annotation {ann.get('id', f'#{k}') if isinstance(ann, dict) else f'#{k}'}"
            )
            if not isinstance(ann, dict):
                self._bad(f"{where} is not an object")
                continue
            if ann.get("image_id") not in images:
                self._bad(f"{where} refers to image_id {ann.get('image_id')!r}, which is not in 'images'")
                continue
            if ann.get("iscrowd"):
                self.num_crowd += 1
                continue
            if wanted is not None and ann.get("category_id") not in wanted:
                continue
            seg = ann.get("segmentation")
            if not seg or (isinstance(seg, dict) and not seg.get("counts")):
                self._bad(f"{where} (image {images[ann['image_id']]['file_name']}) has an empty segmentation")
                continue
            if not isinstance(seg, (list, dict)):
                self._bad(f"{where}: segmentation must be polygons or RLE, got {type(seg).__name__}")
                continue
            per_image.setdefault(ann["image_id"], []).append(ann)

        self.items: list[tuple[dict, list[dict]]] = [
            (im, per_image[iid]) for iid, im in images.items() if iid in per_image
        ]
        self.num_unannotated = len(images) - len(self.items)
        if not self.items:
            what = f" of categories {list(categories)}" if categories is not None else ""
            raise DataError(
                f"{self.json_path}: no usable annotations{what} ({len(images)} images, "
                f"{len(data['annotations'])} annotations, {self.num_crowd} crowd)"
            )
        logger.info(
            "%s: %d images with annotations, %d without (left out), %d crowd annotations not used",
            self.json_path,
            len(self.items),
            self.num_unannotated,
            self.num_crowd,
        )

    def __len__(self) -> int:
        return len(self.items)

    def _decode(self, ann: dict, h: int, w: int, image_path: Path) -> np.ndarray:
        from pycocotools import mask as mask_utils

        ann_id = ann.get("id")
        where = f"{self.json_path}: annotation {ann_id} (image {image_path.name})"
        seg = ann["segmentation"]
        try:
            if isinstance(seg, list):
                polygons = [p for p in seg if isinstance(p, list) and len(p) >= 6]
                if not polygons:
                    raise DataError(f"{where} has no polygon with 3 or more points")
                rle = mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))
            else:
                size = [int(v) for v in seg.get("size", [])]
                if size != [h, w]:
                    raise DataError(
                        f"{where}: RLE size {seg.get('size')} differs from the image's [height, width] {[h, w]}"
                    )
                counts = seg["counts"]
                rle = (
                    mask_utils.frPyObjects(seg, h, w)
                    if isinstance(counts, list)
                    else {"size": size, "counts": counts}
                )
            mask = mask_utils.decode(rle)
        except DataError:
            raise
        except Exception as e:  # pycocotools raises TypeError / ValueError for malformed input
            raise DataError(f"{where}: cannot decode the segmentation ({type(e).__name__}: {e})") from None
        if mask.ndim == 3:
            mask = mask.any(axis=2)
        if not mask.any():
            raise DataError(f"{where} decodes to an empty mask")
        return mask.astype(bool)

    def load(self, index: int, generator: torch.Generator) -> RawSample:
        im, anns = self.items[index]
        path = self.image_dir / str(im["file_name"])
        rgb = _read_image(path)
        h, w = rgb.shape[:2]
        jh, jw = im.get("height", h), im.get("width", w)
        if (jh, jw) != (h, w):
            raise DataError(
                f"image {path} is {w}x{h} but {self.json_path} says {jw}x{jh} (image id {im['id']})"
            )
        chosen = _choose(anns, self.max_objects, generator)
        masks = np.stack([self._decode(a, h, w, path) for a in chosen])
        return RawSample(
            frames=_frames_tensor([rgb]),
            masks=torch.from_numpy(masks)[None],
            object_ids=[int(a.get("id", k)) for k, a in enumerate(chosen)],
            name=str(im["file_name"]),
        )


class MaskFolderImages(TrainDataset):
    """Images with PNG masks of the same stem: ``mask_dir/<stem>.png`` is an instance-id mask
    (palette or grayscale: 0 = background, each other value an object, whose id is that value) or a
    binary mask (one object; a 0/255 mask gets id 1); or ``mask_dir/<stem>/*.png`` holds one binary
    PNG per object (ids: the file stems when they are numbers, else 1, 2, ... in name order; empty
    PNGs are ignored). Up to ``max_objects`` objects per sample, chosen at random. Images without a
    mask are left out; :attr:`num_unannotated` says how many."""

    def __init__(
        self,
        image_dir: str | Path,
        mask_dir: str | Path,
        max_objects: int = 3,
        *,
        augment: AugmentSettings | None = None,
        seed: int = 0,
        skip_bad: bool = False,
    ) -> None:
        super().__init__(augment=augment, seed=seed, skip_bad=skip_bad)
        if max_objects < 1:
            raise ValueError(f"max_objects must be >= 1, got {max_objects}")
        self.image_dir, self.mask_dir, self.max_objects = Path(image_dir), Path(mask_dir), int(max_objects)
        for what, d in (("image folder", self.image_dir), ("mask folder", self.mask_dir)):
            if not d.is_dir():
                raise DataError(f"{what} not found: {d}")
        images = sorted(
            (p for p in self.image_dir.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
            key=_natural_key,
        )
        self.items: list[tuple[Path, Path | list[Path]]] = []
        for p in images:
            single, folder = self.mask_dir / f"{p.stem}.png", self.mask_dir / p.stem
            if single.is_file():
                self.items.append((p, single))
            elif folder.is_dir():
                pngs = sorted((q for q in folder.iterdir() if q.suffix.lower() == ".png"), key=_natural_key)
                if pngs:
                    self.items.append((p, pngs))
        self.num_unannotated = len(images) - len(self.items)
        if not self.items:
            raise DataError(
                f"no image in {self.image_dir} ({len(images)} images) has a mask in {self.mask_dir} "
                "(expected MASK_DIR/<image stem>.png or MASK_DIR/<image stem>/*.png)"
            )
        logger.info(
            "%s: %d images with masks, %d without (left out)",
            self.image_dir,
            len(self.items),
            self.num_unannotated,
        )

    def __len__(self) -> int:
        return len(self.items)

    def load(self, index: int, generator: torch.Generator) -> RawSample:
        image_path, mask_src = self.items[index]
        rgb = _read_image(image_path)
        hw = rgb.shape[:2]
        if isinstance(mask_src, Path):
            labels = _read_label_png(mask_src)
            _check_size(labels.shape, hw, mask_src, image_path)
            values = _label_ids(labels)
            if not values:
                raise DataError(f"mask {mask_src} is empty (no non-zero pixel)")
            chosen = _choose(values, self.max_objects, generator)
            masks = np.stack([labels == v for v in chosen])
            ids = [1] if values == [255] else chosen
        else:
            numbered = all(q.stem.isdigit() for q in mask_src)
            objects: list[tuple[int, Path]] = [
                (int(q.stem) if numbered else k + 1, q) for k, q in enumerate(mask_src)
            ]
            chosen_masks: list[np.ndarray] = []
            ids = []
            present: list[tuple[int, np.ndarray]] = []
            for oid, q in objects:
                m = _read_label_png(q)
                _check_size(m.shape, hw, q, image_path)
                if m.any():
                    present.append((oid, m != 0))
            if not present:
                raise DataError(f"the masks in {mask_src[0].parent} are all empty")
            for oid, m in _choose(present, self.max_objects, generator):
                ids.append(oid)
                chosen_masks.append(m)
            masks = np.stack(chosen_masks)
        return RawSample(
            frames=_frames_tensor([rgb]),
            masks=torch.from_numpy(masks)[None],
            object_ids=ids,
            name=image_path.name,
        )


# --- videos -------------------------------------------------------------------------------------


@dataclass
class _Video:
    name: str
    frames: list[Path]  # the JPEGs of the annotated frames, in order
    masks: list[Path]  # their PNGs


class DavisVideos(TrainDataset):
    """DAVIS / MOSE / YouTube-VOS layout: ``jpeg_dir/<video>/<frame>.jpg`` and
    ``ann_dir/<video>/<frame>.png`` palette PNGs (pixel value = object id, 0 = background).

    A sample (the reference's ``RandomUniformSampler``) is a random window of ``num_frames``
    consecutive annotated frames, played backwards with probability ``reverse_prob``, with up to
    ``max_objects`` of the objects visible in its first frame, chosen at random. When no object shows
    in the first frame another window is drawn (up to 50 times), and then the video is reported.

    Annotations must be dense (every frame) or regular (every k-th frame, e.g. every 5th); a frame
    missing its PNG in between is an error naming the file. A video shorter than ``num_frames``
    annotated frames is an error (with ``skip_bad``: left out and listed in :attr:`skipped`).
    ``file_list``: the videos to use, a text file with one name a line or a list of names.
    """

    def __init__(
        self,
        jpeg_dir: str | Path,
        ann_dir: str | Path,
        num_frames: int = 8,
        max_objects: int = 3,
        file_list: str | Path | Sequence[str] | None = None,
        reverse_prob: float = 0.0,
        *,
        augment: AugmentSettings | None = None,
        seed: int = 0,
        skip_bad: bool = False,
    ) -> None:
        super().__init__(augment=augment, seed=seed, skip_bad=skip_bad)
        if num_frames < 1 or max_objects < 1:
            raise ValueError(f"num_frames and max_objects must be >= 1, got {num_frames} and {max_objects}")
        if not 0.0 <= reverse_prob <= 1.0:
            raise ValueError(f"reverse_prob is a probability in [0, 1], got {reverse_prob}")
        self.jpeg_dir, self.ann_dir = Path(jpeg_dir), Path(ann_dir)
        self.num_frames, self.max_objects, self.reverse_prob = (
            int(num_frames),
            int(max_objects),
            float(reverse_prob),
        )
        for what, d in (("JPEG folder", self.jpeg_dir), ("annotation folder", self.ann_dir)):
            if not d.is_dir():
                raise DataError(f"{what} not found: {d}")
        names = _read_list(file_list)
        if names is None:
            names = sorted(
                (p.name for p in self.jpeg_dir.iterdir() if p.is_dir()), key=lambda n: _natural_key(Path(n))
            )
        self.videos: list[_Video] = []
        for name in names:
            try:
                self.videos.append(self._index_video(name))
            except DataError as e:
                self._bad(str(e))
        if not self.videos:
            raise DataError(f"no usable video in {self.jpeg_dir} (with annotations in {self.ann_dir})")

    def _index_video(self, name: str) -> _Video:
        jpeg_folder, ann_folder = self.jpeg_dir / name, self.ann_dir / name
        if not jpeg_folder.is_dir():
            raise DataError(f"video {name}: frame folder not found: {jpeg_folder}")
        if not ann_folder.is_dir():
            raise DataError(f"video {name}: annotation folder not found: {ann_folder}")
        jpegs = sorted(
            (p for p in jpeg_folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file()),
            key=_natural_key,
        )
        if not jpegs:
            raise DataError(f"video {name}: no JPEG frames in {jpeg_folder}")
        pngs = {_frame_key(p.stem): p for p in ann_folder.iterdir() if p.suffix.lower() == ".png"}
        position = {_frame_key(p.stem): k for k, p in enumerate(jpegs)}
        for key, png in sorted(pngs.items(), key=lambda kv: _natural_key(kv[1])):
            if key not in position:
                raise DataError(
                    f"video {name}: mask {png} has no frame (expected {jpeg_folder / png.stem}.jpg)"
                )
        annotated = sorted(position[k] for k in pngs)
        if not annotated:
            raise DataError(f"video {name}: no annotation PNGs in {ann_folder}")
        # dense (every frame) or regular (every k-th frame from the first); anything else is a gap
        stride = 1
        if len(annotated) > 1:
            stride = math.gcd(*[b - a for a, b in zip(annotated, annotated[1:])])
        expected = range(annotated[0] % stride, len(jpegs), stride)
        have = set(annotated)
        missing = [k for k in expected if k not in have]
        if missing:
            k = missing[0]
            raise DataError(
                f"video {name}: annotation missing for frame {jpegs[k].name}: {ann_folder / jpegs[k].stem}.png "
                f"(training needs every frame annotated, or every k-th frame; {len(missing)} missing)"
            )
        frames = [jpegs[k] for k in annotated]
        if len(frames) < self.num_frames:
            raise DataError(
                f"video {name}: {len(frames)} annotated frames, fewer than num_frames={self.num_frames}"
            )
        return _Video(name, frames, [pngs[_frame_key(p.stem)] for p in frames])

    def __len__(self) -> int:
        return len(self.videos)

    def load(self, index: int, generator: torch.Generator) -> RawSample:
        video = self.videos[index]
        t = self.num_frames
        first_labels: dict[int, np.ndarray] = {}

        def visible_in(k: int) -> list[int]:
            if k not in first_labels:
                first_labels[k] = _read_label_png(video.masks[k])
            return _label_ids(first_labels[k])

        order, visible = _sample_window(
            list(range(len(video.frames))),
            t,
            self.reverse_prob,
            generator,
            visible_in,
            f"video {video.name}: no object visible in the first frame of {MAX_WINDOW_TRIES} random "
            f"windows of {t} frames ({self.ann_dir / video.name})",
        )
        chosen = _choose(visible, self.max_objects, generator)
        frames, masks = [], []
        size = None
        for k in order:
            rgb = _read_image(video.frames[k])
            if size is None:
                size = rgb.shape[:2]
            elif rgb.shape[:2] != size:
                raise DataError(
                    f"video {video.name}: frame {video.frames[k]} is {rgb.shape[1]}x{rgb.shape[0]}, the "
                    f"others {size[1]}x{size[0]}"
                )
            labels = first_labels[k] if k in first_labels else _read_label_png(video.masks[k])
            _check_size(labels.shape, size, video.masks[k], video.frames[k])
            frames.append(rgb)
            masks.append(np.stack([labels == v for v in chosen]))
        return RawSample(_frames_tensor(frames), torch.from_numpy(np.stack(masks)), chosen, video.name)


class SavVideos(TrainDataset):
    """SA-V layout: ``root/<video>.mp4`` with ``root/<video>_manual.json``, whose ``masklet`` holds,
    for each annotated frame, one COCO RLE per object (``masklet[i][j]``: object j in video frame
    ``i * ann_every``; SA-V annotates 24 fps videos at 6 fps, every 4th frame; a ``fps`` field in the
    JSON sets ``ann_every`` from the video's frame rate, as in the reference's loader). Annotated
    frames with a missing (null) mask are not used, as in the reference.

    Samples are drawn as in :class:`DavisVideos` (a window of ``num_frames`` consecutive annotated
    frames, objects visible in its first frame); only the frames of the window are decoded (PyAV,
    seeking to the nearest keyframe). Object ids are the JSON's ``masklet_id`` when it has them.
    """

    def __init__(
        self,
        root: str | Path,
        num_frames: int = 8,
        max_objects: int = 3,
        file_list: str | Path | Sequence[str] | None = None,
        ann_every: int = 4,
        reverse_prob: float = 0.0,
        *,
        augment: AugmentSettings | None = None,
        seed: int = 0,
        skip_bad: bool = False,
    ) -> None:
        super().__init__(augment=augment, seed=seed, skip_bad=skip_bad)
        if num_frames < 1 or max_objects < 1 or ann_every < 1:
            raise ValueError(
                f"num_frames, max_objects and ann_every must be >= 1, got {num_frames}, {max_objects}, {ann_every}"
            )
        if not 0.0 <= reverse_prob <= 1.0:
            raise ValueError(f"reverse_prob is a probability in [0, 1], got {reverse_prob}")
        self.root = Path(root)
        self.num_frames, self.max_objects = int(num_frames), int(max_objects)
        self.ann_every, self.reverse_prob = int(ann_every), float(reverse_prob)
        if not self.root.is_dir():
            raise DataError(f"SA-V folder not found: {self.root}")
        names = _read_list(file_list)
        if names is None:
            names = sorted((p.stem for p in self.root.glob("*.mp4")), key=lambda n: _natural_key(Path(n)))
        self.videos: list[tuple[Path, Path]] = []
        self.num_unannotated = 0
        for name in names:
            mp4, js = self.root / f"{name}.mp4", self.root / f"{name}_manual.json"
            if not mp4.is_file():
                self._bad(f"video not found: {mp4}")
            elif not js.is_file():
                self.num_unannotated += 1
            else:
                self.videos.append((mp4, js))
        if not self.videos:
            raise DataError(
                f"no video in {self.root} has its annotations (<video>.mp4 with <video>_manual.json)"
            )
        logger.info(
            "%s: %d videos with annotations, %d without (left out)",
            self.root,
            len(self.videos),
            self.num_unannotated,
        )

    def __len__(self) -> int:
        return len(self.videos)

    @staticmethod
    def _rle(seg: dict, where: str) -> dict:
        from pycocotools import mask as mask_utils

        if not isinstance(seg, dict) or "size" not in seg or "counts" not in seg:
            raise DataError(f"{where}: not a COCO RLE (needs 'size' and 'counts')")
        if isinstance(seg["counts"], list):
            h, w = seg["size"]
            return mask_utils.frPyObjects(seg, h, w)
        return seg

    def load(self, index: int, generator: torch.Generator) -> RawSample:
        from pycocotools import mask as mask_utils

        from ..video.io import VideoFile, VideoReadError

        mp4, js = self.videos[index]
        try:
            data = json.loads(js.read_text())
        except json.JSONDecodeError as e:
            raise DataError(f"{js}: invalid JSON at line {e.lineno}, column {e.colno}: {e.msg}") from None
        except (OSError, UnicodeDecodeError) as e:
            raise DataError(f"cannot read {js}: {e}") from None
        if isinstance(data, list):
            entries, object_ids = data, None
        elif isinstance(data, dict) and isinstance(data.get("masklet", data.get("masks")), list):
            entries = data.get("masklet", data.get("masks"))
            object_ids = data.get("masklet_id")
        else:
            raise DataError(f"{js}: no 'masklet' list (an SA-V annotation file has one)")
        valid = [
            i for i, e in enumerate(entries) if isinstance(e, list) and e and all(s is not None for s in e)
        ]
        t = self.num_frames
        if len(valid) < t:
            raise DataError(
                f"video {mp4}: {len(valid)} annotated frames in {js.name}, fewer than num_frames={t}"
            )
        n_objects = len(entries[valid[0]])
        if not (isinstance(object_ids, list) and len(object_ids) == n_objects):
            object_ids = list(range(n_objects))

        try:
            video = VideoFile(mp4)
        except (OSError, VideoReadError) as e:
            raise DataError(f"cannot read video {mp4}: {e}") from None
        try:
            ann_every = self.ann_every
            if isinstance(data, dict) and "fps" in data:
                fps = data["fps"][0] if isinstance(data["fps"], list) else data["fps"]
                ann_every = max(1, round(video.fps / float(fps)))

            def rles(entry: int) -> list[dict]:
                row = entries[entry]
                if len(row) != n_objects:
                    raise DataError(
                        f"{js}: masklet[{entry}] has {len(row)} objects, masklet[{valid[0]}] {n_objects}"
                    )
                return [self._rle(s, f"{js}: masklet[{entry}][{j}]") for j, s in enumerate(row)]

            def visible_in(entry: int) -> list[int]:
                areas = mask_utils.area(rles(entry))
                return [j for j in range(n_objects) if areas[j] > 0]

            order, visible = _sample_window(
                valid,
                t,
                self.reverse_prob,
                generator,
                visible_in,
                f"video {mp4}: no object visible in the first frame of {MAX_WINDOW_TRIES} random windows "
                f"of {t} annotated frames",
            )
            chosen = _choose(visible, self.max_objects, generator)
            frames, masks = [], []
            for entry in order:
                index_in_video = entry * ann_every
                if index_in_video >= len(video):
                    raise DataError(
                        f"video {mp4} has {len(video)} frames, but {js.name} annotates frame {index_in_video} "
                        f"(masklet[{entry}], every {ann_every} frames)"
                    )
                try:
                    rgb = video.frame(index_in_video)
                except VideoReadError as e:
                    raise DataError(str(e)) from None
                row = rles(entry)
                m = mask_utils.decode([row[j] for j in chosen])  # (H, W, O)
                _check_size(
                    m.shape[:2], rgb.shape[:2], f"{js.name} masklet[{entry}]", f"{mp4} frame {index_in_video}"
                )
                frames.append(rgb)
                masks.append(np.moveaxis(m, 2, 0).astype(bool))
        finally:
            video.close()
        return RawSample(
            _frames_tensor(frames),
            torch.from_numpy(np.stack(masks)),
            [int(object_ids[j]) for j in chosen],
            mp4.stem,
        )


# --- mixing, specs, splits -----------------------------------------------------------------------


class MixedDataset(torch.utils.data.Dataset):
    """Whole batches from several datasets, each batch from one of them with its own batch size (the
    reference's ``TorchTrainMixedDataset``): images (T = 1) and videos (T = 8) never share a batch.

    Item ``k`` is this rank's k-th :class:`~samkit.train.batch.Batch` of the epoch; use it with
    ``DataLoader(mixed, batch_size=None, shuffle=False, num_workers=...)`` and call
    :meth:`set_epoch` (which sets the datasets' epoch too) before each epoch's iterator is made
    (DataLoader workers copy the datasets when they start, so not with ``persistent_workers``).

    The epoch's batches, for ``(seed, epoch)``: each dataset's items are shuffled and cut into
    batches of its batch size (an incomplete last batch is dropped); consecutive batches of one
    dataset are grouped by ``world_size`` (an incomplete last group is dropped), the groups of all
    datasets are shuffled together, and rank ``r`` takes the r-th batch of every group. So the ranks
    get disjoint batches, the same number of them, and at each step all ranks draw from the same
    dataset (the same frame count: no rank waits on another's longer clips). With ``shuffle=False``
    items and groups keep their order. Each dataset sees about one pass per epoch, and the share of
    a dataset's batches is proportional to its number of batches (the reference's default mixing).
    """

    def __init__(
        self,
        datasets: Sequence[tuple[TrainDataset, int]],
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
    ) -> None:
        if not datasets:
            raise ValueError("MixedDataset needs at least one (dataset, batch_size) pair")
        for pair in datasets:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and int(pair[1]) >= 1):
                raise ValueError(f"expected (dataset, batch_size >= 1) pairs, got {pair!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, world_size), got rank={rank}, world_size={world_size}")
        self.datasets = [(d, int(b)) for d, b in datasets]
        self.seed, self.rank, self.world_size, self.shuffle = (
            int(seed),
            int(rank),
            int(world_size),
            bool(shuffle),
        )
        self.epoch = 0
        self._plan: list[tuple[int, list[int]]] | None = None
        empty = [k for k, (d, b) in enumerate(self.datasets) if len(d) // b < self.world_size]
        for k in empty:
            d, b = self.datasets[k]
            logger.warning(
                "dataset %d (%s, %d items) gives no batch: %d items are fewer than batch_size %d x world_size %d",
                k,
                type(d).__name__,
                len(d),
                len(d),
                b,
                self.world_size,
            )
        if len(empty) == len(self.datasets):
            raise ValueError(
                "no dataset has enough items for one batch on every rank (batch_size x world_size)"
            )

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self._plan = None
        for d, _ in self.datasets:
            if hasattr(d, "set_epoch"):
                d.set_epoch(epoch)

    def batches(self) -> list[tuple[int, list[int]]]:
        """This rank's batches of the epoch: (dataset index, item indices) pairs."""
        if self._plan is None:
            groups: list[tuple[int, list[list[int]]]] = []
            for k, (d, b) in enumerate(self.datasets):
                n = len(d)
                if self.shuffle:
                    order = torch.randperm(
                        n, generator=derive_generator("mix", self.seed, self.epoch, k)
                    ).tolist()
                else:
                    order = list(range(n))
                per_group = b * self.world_size
                for g0 in range(0, n - per_group + 1, per_group):
                    chunk = order[g0 : g0 + per_group]
                    groups.append((k, [chunk[r * b : (r + 1) * b] for r in range(self.world_size)]))
            if self.shuffle:
                perm = torch.randperm(
                    len(groups), generator=derive_generator("mix", self.seed, self.epoch)
                ).tolist()
                groups = [groups[j] for j in perm]
            self._plan = [(k, per_rank[self.rank]) for k, per_rank in groups]
        return self._plan

    def __len__(self) -> int:
        return len(self.batches())

    def __getitem__(self, index: int) -> Batch:
        k, items = self.batches()[index]
        dataset = self.datasets[k][0]
        return collate([dataset[i] for i in items])


_SPEC_FORMS = "coco:ANNOTATIONS.json:IMAGE_DIR, folder:IMAGE_DIR:MASK_DIR, davis:JPEG_DIR:ANN_DIR, sav:DIR"
_SPECS: dict[str, tuple[type[TrainDataset], tuple[str, ...], tuple[str, ...]]] = {
    # kind: (reader, what each path is, "file" / "dir")
    "coco": (CocoImages, ("annotations file", "image folder"), ("file", "dir")),
    "folder": (MaskFolderImages, ("image folder", "mask folder"), ("dir", "dir")),
    "davis": (DavisVideos, ("JPEG folder", "annotation folder"), ("dir", "dir")),
    "sav": (SavVideos, ("SA-V folder",), ("dir",)),
}


def parse_data_spec(spec: str, **kw: Any) -> TrainDataset:
    """A dataset from a ``--data`` spec: ``coco:ANNOTATIONS.json:IMAGE_DIR``,
    ``folder:IMAGE_DIR:MASK_DIR``, ``davis:JPEG_DIR:ANN_DIR`` or ``sav:DIR``.

    ``kw`` (augment, seed, skip_bad, max_objects, num_frames, ...) go to the reader; those it does not
    take are dropped, so one set of options can serve every kind (a keyword no reader takes is a
    TypeError). A malformed spec is a ValueError listing the forms; a missing path a DataError
    naming it.
    """
    kind, _, rest = str(spec).partition(":")
    entry = _SPECS.get(kind.strip().lower())
    parts = rest.split(":") if rest else []
    if entry is None or len(parts) != len(entry[1]) or not all(p.strip() for p in parts):
        raise ValueError(f"bad data spec {spec!r}: expected one of {_SPEC_FORMS}")
    cls, roles, kinds = entry
    paths = [Path(p.strip()).expanduser() for p in parts]
    for role, want, p in zip(roles, kinds, paths):
        ok = p.is_file() if want == "file" else p.is_dir()
        if not ok:
            raise DataError(
                f"{kind}: {role} not found: {p}" + (" (it is a file)" if want == "dir" and p.exists() else "")
            )
    known = set()
    for c, r, _ in _SPECS.values():  # the options of every reader, less self and the paths
        known |= set(list(inspect.signature(c.__init__).parameters)[1 + len(r) :])
    unknown = sorted(set(kw) - known)
    if unknown:
        raise TypeError(f"unknown dataset option(s): {', '.join(unknown)}")
    accepted = set(inspect.signature(cls.__init__).parameters)
    return cls(*paths, **{k: v for k, v in kw.items() if k in accepted})


def split(
    dataset: TrainDataset, val_fraction: float, seed: int = 0, val_augment: AugmentSettings | None = None
) -> tuple[SubsetDataset, SubsetDataset]:
    """(train, val) subsets of ``dataset``: ``round(val_fraction * len)`` items (at least one, and at
    least one left for training) chosen at random by ``seed``, the rest for training. Items are whole
    images or videos, so no video is in both. ``val`` is augmented with ``val_augment``, by default
    :meth:`AugmentSettings.none` at the dataset's size (deterministic)."""
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    n = len(dataset)
    if n < 2:
        raise ValueError(f"cannot split a dataset of {n} item(s) into training and validation")
    n_val = min(n - 1, max(1, round(val_fraction * n)))
    perm = torch.randperm(n, generator=derive_generator("split", int(seed))).tolist()
    val_idx, train_idx = sorted(perm[:n_val]), sorted(perm[n_val:])
    if val_augment is None:
        val_augment = AugmentSettings.none(dataset.augment.size)
    return SubsetDataset(dataset, train_idx), SubsetDataset(dataset, val_idx, augment=val_augment)
