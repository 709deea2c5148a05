"""Video object segmentation scores: region similarity J, boundary accuracy F and J&F.

The numbers are those of the DAVIS 2017 semi-supervised evaluation as Meta's SA-V evaluator
(``sav_dataset/sav_evaluator.py``) computes them, quirks included, so they can be compared with
published results:

* J is the IoU of predicted and ground-truth masks, 1 when both are empty.
* F is the F-measure of boundary pixels (DAVIS ``seg2bmap`` boundaries) matched within a disk of
  radius ``ceil(0.008 * image diagonal)``.
* An object's per-frame scores start at the first evaluated frame where it appears in the ground
  truth *or in the prediction* (both evaluators accumulate objects as they are seen); objects only
  ever predicted are not scored.
* The first and last annotated frames are skipped (the semi-supervised protocol; ``all_frames`` keeps
  them).
* Per object: the mean over frames, in percent. Global J and F: the mean over all objects of all
  videos; J&F their mean.

Two ground-truth layouts, told apart per video as Meta's evaluator does: DAVIS (``video/frame.png``,
palette or grayscale PNGs whose pixel values are object ids) and SA-V (``video/obj/frame.png``, one
binary PNG per object). The prediction folder must have the same layout.

The boundary matching uses a Euclidean distance transform (scipy) instead of a dilation by a disk:
a pixel lies in the dilation of a boundary by the disk {x^2 + y^2 <= r^2} exactly when its distance to
the nearest boundary pixel is at most r, so the counts are the same.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._files import atomic_write
from .errors import EvalError

BOUNDARY_TOLERANCE = 0.008  # of the image diagonal (DAVIS 2017)


# --- per-frame measures ----------------------------------------------------------------------


def region_similarity(pred: np.ndarray, gt: np.ndarray) -> float:
    """J: intersection over union of two binary masks; 1.0 when both are empty."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    inter = int(np.count_nonzero(pred & gt))
    total = int(np.count_nonzero(pred)) + int(np.count_nonzero(gt))
    if total == 0:
        return 1.0
    return inter / (total - inter)


def boundary_map(mask: np.ndarray) -> np.ndarray:
    """The one-pixel-wide boundary of a binary mask, as DAVIS's ``seg2bmap`` draws it: a pixel is on
    the boundary when it differs from its right, lower or lower-right neighbour (pixels past the last
    row or column count as background), half a pixel towards the origin from the true edge."""
    seg = np.asarray(mask, dtype=bool)
    right = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    below = np.zeros_like(seg)
    below[:-1, :] = seg[1:, :]
    diagonal = np.zeros_like(seg)
    diagonal[:-1, :-1] = seg[1:, 1:]
    edge = (seg != right) | (seg != below) | (seg != diagonal)
    # the last row compares with the right neighbour only, the last column with the one below only,
    # and the corner is never on the boundary
    edge[-1, :] = seg[-1, :] != right[-1, :]
    edge[:, -1] = seg[:, -1] != below[:, -1]
    edge[-1, -1] = False
    return edge


def tolerance_radius(shape: Sequence[int], tolerance: float = BOUNDARY_TOLERANCE) -> float:
    """The boundary matching radius in pixels: ``ceil(tolerance * diagonal)``."""
    return float(np.ceil(tolerance * np.linalg.norm(shape)))


def _within(points: np.ndarray, targets: np.ndarray, radius: float) -> int:
    """How many True pixels of ``points`` lie within ``radius`` (Euclidean) of a True pixel of
    ``targets``; both non-empty."""
    from scipy.ndimage import distance_transform_edt

    # every target pixel (the zeros of the transform's input) and every point lies in this box, so
    # distances measured inside it are the true ones
    ys, xs = np.nonzero(points | targets)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    dist = distance_transform_edt(~targets[box])
    # distances are square roots of integers: sqrt(n) <= r exactly when n <= r*r, and the next
    # integer is more than 1/(2r+1) away, far beyond float error
    return int(np.count_nonzero(points[box] & (dist <= radius + 1e-9)))


def boundary_f(pred: np.ndarray, gt: np.ndarray, radius: float | None = None) -> float:
    """F: the boundary F-measure of two binary masks (DAVIS), boundary pixels matching within
    ``radius`` (default :func:`tolerance_radius` of the mask's shape)."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if radius is None:
        radius = tolerance_radius(pred.shape)
    pb, gb = boundary_map(pred), boundary_map(gt)
    n_pred, n_gt = int(np.count_nonzero(pb)), int(np.count_nonzero(gb))
    if n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    elif n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        precision = _within(pb, gb, radius) / float(n_pred)
        recall = _within(gb, pb, radius) / float(n_gt)
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def _ids(labels: np.ndarray) -> list:
    """The non-zero values of a label image, ascending, as Python scalars."""
    if labels.dtype == bool:
        return [True] if labels.any() else []
    if labels.dtype.kind == "u" and labels.dtype.itemsize <= 2:
        present = np.flatnonzero(np.bincount(labels.ravel()))
        return [int(v) for v in present if v != 0]
    values = np.unique(labels)
    return values[values != 0].tolist()


class _Accumulator:
    """Per-object J and F over the frames of one video (one object of an SA-V video)."""

    def __init__(self) -> None:
        self.in_gt: set = set()
        self.seen: set = set()
        self.j: dict[Any, list[float]] = defaultdict(list)
        self.f: dict[Any, list[float]] = defaultdict(list)

    def add(self, pred: np.ndarray, gt: np.ndarray) -> None:
        gt_ids = _ids(gt)
        # sets updated as the reference updates them, so the objects come out in the same order
        self.in_gt.update(set(gt_ids))
        self.seen.update(set(gt_ids))
        self.seen.update(set(_ids(pred)))
        radius = tolerance_radius(pred.shape)
        for obj in self.seen:
            p, g = pred == obj, gt == obj
            self.j[obj].append(region_similarity(p, g))
            self.f[obj].append(boundary_f(p, g, radius))

    def result(self) -> list[tuple[Any, float, float]]:
        """(object, J %, F %) for each object of the ground truth."""
        return [(obj, np.mean(self.j[obj]) * 100, np.mean(self.f[obj]) * 100) for obj in self.in_gt]


# --- reading folders -------------------------------------------------------------------------


def _listdir(path: Path) -> list[str]:
    return sorted(name for name in os.listdir(path) if not name.startswith("."))


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask PNG as a 2-D array of object ids (palette indices or gray values)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            arr = np.array(im)
    except FileNotFoundError:
        raise EvalError(f"missing mask: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise EvalError(f"cannot read mask {path}: {e}") from None
    if arr.ndim != 2:
        raise EvalError(
            f"{path} is a {arr.shape[2]}-channel image; masks must be palette or grayscale PNGs "
            "whose pixel values are object ids"
        )
    return arr


def _pair(gt_path: Path, pred_path: Path, binary: bool) -> tuple[np.ndarray, np.ndarray]:
    if not pred_path.is_file():
        raise EvalError(f"missing prediction {pred_path} (the ground truth has {gt_path})")
    gt, pred = read_mask(gt_path), read_mask(pred_path)
    if gt.shape != pred.shape:
        raise EvalError(
            f"size mismatch: {pred_path} is {pred.shape[1]}x{pred.shape[0]}, "
            f"{gt_path} is {gt.shape[1]}x{gt.shape[0]}"
        )
    if binary:
        for arr, p in ((gt, gt_path), (pred, pred_path)):
            if len(_ids(arr)) > 1:
                raise EvalError(
                    f"{p} holds more than one object; the SA-V layout (video/object/frame.png) has one "
                    "binary mask per PNG"
                )
        gt, pred = gt > 0, pred > 0
    return gt, pred


@dataclass
class _VideoJob:
    gt_root: Path
    pred_root: Path
    skip_first_and_last: bool

    def __call__(self, video: str) -> tuple[str, list[tuple[Any, float, float]], list[str]]:
        gt_dir, pred_dir = self.gt_root / video, self.pred_root / video
        names = _listdir(gt_dir)
        notes: list[str] = []
        rows: list[tuple[Any, float, float]] = []
        if all(n.endswith(".png") for n in names):  # DAVIS: every object in one PNG per frame
            acc = _Accumulator()
            for frame in self._frames(names):
                gt, pred = _pair(gt_dir / frame, pred_dir / frame, binary=False)
                acc.add(pred, gt)
            rows = acc.result()
        else:  # SA-V: a folder of binary PNGs per object
            for obj in names:
                if not (gt_dir / obj).is_dir():
                    raise EvalError(
                        f"{gt_dir} mixes files and folders: expected video/frame.png (DAVIS) or "
                        f"video/object/frame.png (SA-V), found {obj}"
                    )
                if not (pred_dir / obj).is_dir():
                    raise EvalError(
                        f"object {obj} of video {video} has no prediction folder {pred_dir / obj}"
                    )
                acc = _Accumulator()
                for frame in self._frames(_listdir(gt_dir / obj)):
                    gt, pred = _pair(gt_dir / obj / frame, pred_dir / obj / frame, binary=True)
                    acc.add(pred, gt)
                scored = acc.result()
                if not scored:
                    # Meta's evaluator stops on such an object; it has no score to give
                    notes.append(f"{video}/{obj}: no ground-truth pixel in the evaluated frames; not scored")
                    continue
                rows.append((obj, scored[0][1], scored[0][2]))
        return video, rows, notes

    def _frames(self, names: list[str]) -> list[str]:
        return names[1:-1] if self.skip_first_and_last else names


# --- the evaluation --------------------------------------------------------------------------


@dataclass
class VosResult:
    """J, F and J&F (percent) of one prediction folder against the ground truth.

    ``objects``: one ``(video, object, J, F)`` row per scored object, in the order of Meta's
    ``results.csv`` (``object`` is the DAVIS object id, an int, or the SA-V object folder's name).
    """

    gt_root: str
    pred_root: str
    jf: float
    j: float
    f: float
    objects: list[tuple[str, Any, float, float]]
    video_names: list[str] = field(default_factory=list)
    all_frames: bool = False
    seconds: float = 0.0
    processes: int = 1
    notes: list[str] = field(default_factory=list)

    def videos(self) -> dict[str, dict[str, dict[str, float]]]:
        """``{video: {object: {"J&F", "J", "F"}}}`` in percent, unrounded."""
        out: dict[str, dict[str, dict[str, float]]] = {v: {} for v in self.video_names}
        for video, obj, j, f in self.objects:
            out.setdefault(video, {})[_label(obj)] = {"J&F": (j + f) / 2, "J": j, "F": f}
        return out

    def csv(self) -> str:
        """The table Meta's evaluator writes to ``results.csv`` (same rows, same rounding)."""
        names = self.video_names or [v for v, *_ in self.objects]
        width = max([len("Global score")] + [len(v) for v in names])
        lines = [
            f"{'sequence':<{width}},{'obj':>3}, {'J&F':>4}, {'J':>4}, {'F':>4}",
            f"{'Global score':<{width}},{'':>3}, {self.jf:.1f}, {self.j:.1f}, {self.f:.1f}",
        ]
        for video, obj, j, f in self.objects:
            lines.append(f"{video:<{width}},{obj:03}, {(j + f) / 2:>4.1f}, {j:>4.1f}, {f:>4.1f}")
        return "\n".join(lines) + "\n"

    def table(self) -> str:
        """The console table (the CSV with spaces for commas, as Meta's evaluator prints it)."""
        return self.csv().replace(",", " ")

    def summary(self) -> str:
        return f"Global score: J&F: {self.jf:.1f} J: {self.j:.1f} F: {self.f:.1f}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "J&F": self.jf,
            "J": self.j,
            "F": self.f,
            "videos": self.videos(),
            "gt": self.gt_root,
            "pred": self.pred_root,
            "all_frames": self.all_frames,
            "objects": len(self.objects),
            "seconds": self.seconds,
            "processes": self.processes,
            "notes": list(self.notes),
        }


def _label(obj: Any) -> str:
    """An object's name in the JSON: DAVIS ids as the table prints them (001), SA-V folder names as they are."""
    return obj if isinstance(obj, str) else f"{obj:03}"


def _is_video_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".")


def _resolve_gt_root(gt_root: Path, pred_root: Path) -> Path:
    """A dataset root given for its Annotations folder (as Meta's evaluator allows): DAVIS's
    ``Annotations/`` holds one folder per resolution (``480p``) and SA-V's the videos."""
    ann = gt_root / "Annotations"
    if ann.is_dir() and not (pred_root / "Annotations").is_dir():
        # DAVIS: Annotations/480p/<video> (and Full-Resolution); SA-V: Annotations_6fps/<video>
        for resolution in ("480p", "Full-Resolution"):
            if (ann / resolution).is_dir():
                return ann / resolution
        return ann
    return gt_root


def match_videos(gt_root: Path, pred_root: Path, strict: bool = False) -> list[str]:
    """The videos to score: every ground-truth video with ``strict`` (and no extra prediction),
    else those present in both folders."""
    gt_videos = {p.name for p in gt_root.iterdir() if _is_video_dir(p)}
    pred_videos = {p.name for p in pred_root.iterdir() if _is_video_dir(p)}
    if not gt_videos:
        raise EvalError(f"no video folder in the ground truth {gt_root}")
    if strict:
        missing, extra = sorted(gt_videos - pred_videos), sorted(pred_videos - gt_videos)
        problems = []
        if missing:
            problems.append(
                f"{len(missing)} video(s) of {gt_root} have no prediction in {pred_root}: {_few(missing)}"
            )
        if extra:
            problems.append(f"{len(extra)} video(s) of {pred_root} are not in {gt_root}: {_few(extra)}")
        if problems:
            raise EvalError("; ".join(problems) + " (--strict)")
        return sorted(gt_videos)
    videos = sorted(gt_videos & pred_videos)
    if not videos:
        raise EvalError(
            f"no video of {gt_root} ({_few(sorted(gt_videos))}) has a prediction folder in {pred_root} "
            f"({_few(sorted(pred_videos)) or 'empty'})"
        )
    return videos


def _few(names: list[str], k: int = 5) -> str:
    return ", ".join(names[:k]) + (f", ... ({len(names) - k} more)" if len(names) > k else "")


def _results(
    job: _VideoJob, videos: list[str], processes: int, progress: bool
) -> Iterator[tuple[str, list, list]]:
    from tqdm.auto import tqdm

    bar = tqdm(
        total=len(videos), desc="samkit eval vos", unit="video", disable=not progress, dynamic_ncols=True
    )
    try:
        if processes <= 1 or len(videos) == 1:
            for v in videos:
                yield job(v)
                bar.update()
            return
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        with ctx.Pool(min(processes, len(videos))) as pool:
            for item in pool.imap(job, videos):
                yield item
                bar.update()
    finally:
        bar.close()


def vos(
    gt: str | os.PathLike,
    pred: str | os.PathLike,
    *,
    strict: bool = False,
    all_frames: bool = False,
    processes: int | None = None,
    progress: bool = False,
    write_csv: bool = True,
) -> VosResult:
    """Score the masks in ``pred`` against the ground truth in ``gt`` (J, F, J&F in percent).

    Args:
        gt: ground-truth folder, DAVIS (``video/frame.png``) or SA-V (``video/object/frame.png``)
            layout; a dataset root with an ``Annotations`` folder works too.
        pred: predictions in the same layout (``samkit track --dataset`` writes them). Every
            ground-truth frame of a scored video needs a prediction; extra predicted frames are ignored.
        strict: every ground-truth video must have a prediction folder, and no other video may.
            Without it the videos in both folders are scored.
        all_frames: score the first and last annotated frames too (the semi-supervised protocol,
            the default, skips them).
        processes: worker processes, one video at a time each (default: the CPU count).
        progress: a progress bar over videos.
        write_csv: write Meta's ``results.csv`` into ``pred`` (atomically).

    Raises:
        EvalError: a missing folder or prediction, masks of different sizes, an unreadable PNG, a
            PNG with several objects in the SA-V layout, or nothing to score.
    """
    start = time.perf_counter()
    gt_root, pred_root = Path(gt).expanduser(), Path(pred).expanduser()
    for what, p in (("ground-truth folder", gt_root), ("prediction folder", pred_root)):
        if not p.is_dir():
            raise EvalError(f"{what} not found: {p}" + (" (it is a file)" if p.exists() else ""))
    gt_root = _resolve_gt_root(gt_root, pred_root)
    videos = match_videos(gt_root, pred_root, strict=strict)
    processes = int(processes) if processes else (os.cpu_count() or 1)
    job = _VideoJob(gt_root, pred_root, skip_first_and_last=not all_frames)
    rows: list[tuple[str, Any, float, float]] = []
    notes: list[str] = []
    for video, scored, video_notes in _results(job, videos, processes, progress):
        rows.extend((video, obj, j, f) for obj, j, f in scored)
        notes.extend(video_notes)
    if not rows:
        raise EvalError(
            f"nothing to score: no object of {gt_root} appears in the evaluated frames of {len(videos)} "
            "video(s)" + ("" if all_frames else " (the first and last annotated frames are skipped)")
        )
    j = float(np.array([r[2] for r in rows]).mean())
    f = float(np.array([r[3] for r in rows]).mean())
    result = VosResult(
        gt_root=str(gt_root),
        pred_root=str(pred_root),
        jf=(j + f) / 2,
        j=j,
        f=f,
        objects=rows,
        video_names=videos,
        all_frames=all_frames,
        seconds=time.perf_counter() - start,
        processes=min(processes, len(videos)),
        notes=notes,
    )
    if write_csv:
        atomic_write(pred_root / "results.csv", lambda tmp: tmp.write_text(result.csv()))
    return result
