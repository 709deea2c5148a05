"""Video object segmentation on a whole dataset (``samkit track --dataset``), as Meta's
``tools/vos_inference.py`` does it: every video of a DAVIS- or SA-V-style folder, its objects
prompted with their ground-truth masks and tracked through the video, the masks written as PNGs in
the layout the benchmarks' evaluators read.

Layouts (:func:`parse_dataset_spec`):

- ``davis:FRAMES_ROOT:ANNOTATIONS_ROOT``: ``FRAMES_ROOT/<video>/<frame>.jpg`` and
  ``ANNOTATIONS_ROOT/<video>/<frame>.png`` palette PNGs, all objects in one PNG (pixel value = object
  id, 0 = background). DAVIS, MOSE, YouTube-VOS, LVOS.
- ``sav:ROOT`` (``ROOT/JPEGImages_24fps`` and ``ROOT/Annotations_6fps``) or
  ``sav:FRAMES_ROOT:ANNOTATIONS_ROOT``: ``ANNOTATIONS_ROOT/<video>/<obj:03d>/<frame>.png``, one binary
  PNG per object (SA-V val / test).

Per video (:func:`track_video`): frames are taken in the order of their numbers; each object is
prompted (``add_new_mask``) with its mask on the **first frame where its annotation shows it**, and
all objects of the video are tracked forward in one :class:`~samkit.VideoPredictor` session. An
object that first appears on frame k joins the session on frame k: the video is propagated up to
frame k - 1, the object is added on frame k, and propagation goes on from there, so the object
starts there (absent before, no memory of earlier frames). Meta's ``vos_inference`` prompts frame 0
only and stops on objects that appear later (its ``--track_object_appearing_later_in_video`` tracks
each object in a session of its own instead). The predictor is set up as Meta's script builds its
own (without post-processing: no hole filling, prompted masks encoded into memory as probabilities).
Masks are ``logits > score_thresh``.

Output, one folder per video, every frame (named by the frame's stem):

- ``OUT/<video>/<frame>.png``: a palette PNG with the input annotation's palette (Meta's DAVIS
  palette when the input has none); objects overlap nowhere (Meta's ``non_overlap_masks``), and where
  a ``score_thresh`` below -10 lets them, the lowest id wins, as in Meta's ``put_per_obj_mask``;
- or, with ``per_object_png`` (the default for SA-V input), ``OUT/<video>/<obj:03d>/<frame>.png``: a
  0/1 PNG per object and frame, objects free to overlap (SA-V's layout).

Resumable: each video is written into a temporary folder ``OUT/.tmp-<video>-...`` and renamed to
``OUT/<video>`` when complete, so ``OUT/<video>`` exists exactly when the video is done; a rerun skips
those and redoes the others (temporary folders left by a crash are removed). ``OUT/.samkit-track.json``
records the settings that decide the masks; a rerun with other settings is refused.

``engine="ray"`` runs one video per Ray task on an actor pool (one model per actor, loaded once);
the workers read the dataset and write ``OUT`` themselves, so on a cluster both must be on a shared
file system.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .._annotations import frame_key, label_ids, natural_key, read_label_png
from .._files import atomic_write
from .io import FrameFolder, VideoReadError

__all__ = [
    "DAVIS_PALETTE",
    "DatasetError",
    "DatasetSummary",
    "ModelSource",
    "VideoDataset",
    "VideoItem",
    "VideoResult",
    "davis_palette",
    "parse_dataset_spec",
    "track_dataset",
    "track_video",
]

# SA-V's folder names: frames at 24 fps, annotations at 6 fps (every 4th frame)
SAV_FRAMES = "JPEGImages_24fps"
SAV_ANNOTATIONS = "Annotations_6fps"
FRAME_SUFFIXES = (".jpg", ".jpeg", ".png")
JOB_FILE = ".samkit-track.json"
TEMP_PREFIX = ".tmp-"
SPEC_FORMS = "davis:FRAMES_ROOT:ANNOTATIONS_ROOT, sav:ROOT or sav:FRAMES_ROOT:ANNOTATIONS_ROOT"


class DatasetError(ValueError):
    """A dataset that cannot be used (a bad spec, a missing folder, an annotation that does not fit
    its video, ...), or an output folder holding another run's results. The message names the file."""


def davis_palette() -> list[int]:
    """The 256-colour palette of DAVIS 2017 annotations (the PASCAL VOC colour map), as PIL's flat
    ``[r, g, b, r, g, b, ...]`` list: the palette Meta's ``vos_inference`` writes when the input has none."""
    out = []
    for i in range(256):
        r = g = b = 0
        c = i
        for bit in range(7, -1, -1):
            r |= (c & 1) << bit
            g |= ((c >> 1) & 1) << bit
            b |= ((c >> 2) & 1) << bit
            c >>= 3
        out += [r, g, b]
    return out


DAVIS_PALETTE = davis_palette()


# --- the dataset ---------------------------------------------------------------------------------


class _FrameFiles(FrameFolder):
    """A video read from a given, ordered list of frame files."""

    def __init__(self, paths: list[Path], name: str) -> None:
        self.paths = list(paths)
        self.name = name
        first = self.frame(0)
        self.height, self.width = first.shape[:2]


@dataclass
class VideoItem:
    """One video, ready to track: its frames in order, each object's first mask and the palette.

    ``prompts[obj_id] = (frame_index, mask)``: the object's mask (H, W bool) on the first frame its
    annotation shows it. ``object_ids``: every object of the video, ascending (with SA-V input, also
    those whose masks are empty everywhere: their output is empty). ``palette``: the first annotation
    PNG's palette, or None."""

    name: str
    frames: list[Path]
    height: int
    width: int
    prompts: dict[int, tuple[int, np.ndarray]]
    object_ids: list[int]
    palette: list[int] | None = None
    source: FrameFolder | None = field(default=None, repr=False)

    @property
    def num_frames(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class VideoDataset:
    """A dataset on disk: ``kind`` ``davis`` (a palette PNG per frame) or ``sav`` (a folder of
    binary PNGs per object); ``frames_root/<video>/`` holds each video's frames and
    ``annotations_root/<video>/`` its annotations."""

    kind: str
    frames_root: Path
    annotations_root: Path

    @property
    def per_object_input(self) -> bool:
        """Whether the annotations are per-object PNG folders (SA-V)."""
        return self.kind == "sav"

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.frames_root}:{self.annotations_root}"

    def video_names(self, only: Sequence[str] | None = None) -> list[str]:
        """The videos (sub-folders of ``frames_root``) in natural order, or those of ``only`` (in its
        order, duplicates dropped); a name in ``only`` without a frame folder is an error."""
        if only is not None:
            names = list(dict.fromkeys(str(n).strip() for n in only if str(n).strip()))
            missing = [n for n in names if not (self.frames_root / n).is_dir()]
            if missing:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                raise DatasetError(f"{self.kind}: no frame folder for video(s) {shown} in {self.frames_root}")
        else:
            names = sorted(
                (p.name for p in self.frames_root.iterdir() if p.is_dir() and not p.name.startswith(".")),
                key=lambda n: natural_key(Path(n)),
            )
        if not names:
            raise DatasetError(f"{self.kind}: no videos (sub-folders of frames) in {self.frames_root}")
        return names

    def frame_paths(self, name: str) -> list[Path]:
        """The frame files of video ``name``, sorted by their numbers."""
        folder = self.frames_root / name
        if not folder.is_dir():
            raise DatasetError(f"video {name}: frame folder not found: {folder}")
        frames = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and p.is_file()),
            key=natural_key,
        )
        if not frames:
            raise DatasetError(f"video {name}: no frames (JPEG images) in {folder}")
        return frames

    def check_video(self, name: str) -> None:
        """The cheap checks, done for every video before any is tracked: frames present, annotation
        folder present and not empty."""
        self.frame_paths(name)
        ann = self.annotations_root / name
        if not ann.is_dir():
            raise DatasetError(f"video {name} has frames but no annotation folder: {ann} not found")
        if not any(ann.iterdir()):
            raise DatasetError(f"video {name}: its annotation folder {ann} is empty")

    def load_video(self, name: str) -> VideoItem:
        """Read video ``name``'s annotations: each object's first mask, the palette; checks that every
        annotation read matches a frame and has the frames' size."""
        self.check_video(name)
        frames = self.frame_paths(name)
        try:
            source = _FrameFiles(frames, str(self.frames_root / name))
        except VideoReadError as e:
            raise DatasetError(f"video {name}: {e}") from None
        item = VideoItem(name, frames, source.height, source.width, {}, [], source=source)
        position = {frame_key(p.stem): k for k, p in enumerate(frames)}
        ann = self.annotations_root / name
        if self.per_object_input:
            self._load_per_object(item, ann, position)
        else:
            self._load_palette(item, ann, position)
        if not item.prompts:
            raise DatasetError(f"video {name}: no object appears in any of its annotations ({ann})")
        return item

    # -- readers --

    @staticmethod
    def _pngs(folder: Path, position: dict, item: VideoItem) -> list[tuple[int, Path]]:
        """(frame index, path) of the PNGs of ``folder`` in frame order; a PNG without a frame is an error."""
        out = []
        for p in folder.iterdir():
            if p.suffix.lower() != ".png" or not p.is_file():
                continue
            k = position.get(frame_key(p.stem))
            if k is None:
                raise DatasetError(
                    f"video {item.name}: annotation {p} has no frame (no {p.stem}.jpg among its "
                    f"{item.num_frames} frames)"
                )
            out.append((k, p))
        return sorted(out)

    @staticmethod
    def _read(path: Path, item: VideoItem) -> np.ndarray:
        labels = read_label_png(path, DatasetError)
        h, w = labels.shape[:2]
        if (h, w) != (item.height, item.width):
            raise DatasetError(
                f"annotation {path} is {w}x{h} but the frames of video {item.name} are "
                f"{item.width}x{item.height} (width x height)"
            )
        if item.palette is None:
            item.palette = _palette_of(path)
        return labels

    def _load_palette(self, item: VideoItem, ann: Path, position: dict) -> None:
        pngs = self._pngs(ann, position, item)
        if not pngs:
            raise DatasetError(f"video {item.name}: no annotation PNGs in {ann}")
        for k, path in pngs:
            labels = self._read(path, item)
            for obj in label_ids(labels):
                if obj not in item.prompts:
                    item.prompts[obj] = (k, labels == obj)
        item.object_ids = sorted(item.prompts)

    def _load_per_object(self, item: VideoItem, ann: Path, position: dict) -> None:
        folders = [p for p in ann.iterdir() if p.is_dir() and not p.name.startswith(".")]
        for p in folders:
            if not p.name.isdigit():
                raise DatasetError(
                    f"video {item.name}: {p} is not an object folder (SA-V names them by object id: 000, 001, ...)"
                )
        if not folders:
            raise DatasetError(f"video {item.name}: no object folders (000, 001, ...) in {ann}")
        for p in sorted(folders, key=lambda p: int(p.name)):
            obj = int(p.name)
            item.object_ids.append(obj)
            for k, path in self._pngs(p, position, item):
                mask = self._read(path, item) > 0
                if mask.any():
                    item.prompts[obj] = (k, mask)
                    break


def _palette_of(path: Path) -> list[int] | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return list(im.getpalette()) if im.mode in ("P", "PA") and im.getpalette() else None
    except Exception:  # read_label_png has already opened it; a palette problem is no reason to fail
        return None


def parse_dataset_spec(spec: str | VideoDataset) -> VideoDataset:
    """A :class:`VideoDataset` from ``davis:FRAMES_ROOT:ANNOTATIONS_ROOT``, ``sav:ROOT`` (with
    ``ROOT/JPEGImages_24fps`` and ``ROOT/Annotations_6fps``) or ``sav:FRAMES_ROOT:ANNOTATIONS_ROOT``.
    A malformed spec or a missing folder is a :class:`DatasetError` naming it."""
    if isinstance(spec, VideoDataset):
        return spec
    kind, _, rest = str(spec).partition(":")
    kind = kind.strip().lower()
    parts = [p.strip() for p in rest.split(":")] if rest else []
    if kind not in ("davis", "sav") or not parts or not all(parts) or len(parts) > 2:
        raise DatasetError(f"bad dataset spec {str(spec)!r}: expected {SPEC_FORMS}")
    if kind == "davis" and len(parts) != 2:
        raise DatasetError(f"bad dataset spec {str(spec)!r}: davis needs davis:FRAMES_ROOT:ANNOTATIONS_ROOT")
    if len(parts) == 1:
        root = Path(parts[0]).expanduser()
        if not root.is_dir():
            raise DatasetError(f"sav: folder not found: {root}")
        frames, anns = root / SAV_FRAMES, root / SAV_ANNOTATIONS
        hint = f" (an SA-V folder holds {SAV_FRAMES}/ and {SAV_ANNOTATIONS}/; or give sav:FRAMES_ROOT:ANNOTATIONS_ROOT)"
    else:
        frames, anns = (Path(p).expanduser() for p in parts)
        hint = ""
    for role, p in (("frames folder", frames), ("annotations folder", anns)):
        if not p.is_dir():
            raise DatasetError(
                f"{kind}: {role} not found: {p}" + (" (it is a file)" if p.exists() else "") + hint
            )
    return VideoDataset(kind, frames, anns)


# --- one video -----------------------------------------------------------------------------------


@dataclass
class VideoResult:
    """What :func:`track_video` wrote: ``frames`` PNG frames for ``objects`` objects in ``out``."""

    name: str
    frames: int
    objects: int
    seconds: float
    out: Path


def _save_png(path: Path, array: np.ndarray, palette: list[int]) -> None:
    from PIL import Image

    im = Image.fromarray(array)  # uint8 'L'; a palette makes it 'P' (as Meta's save_ann_png)
    im.putpalette(palette)
    im.save(path)


def _compose(masks: dict[int, np.ndarray], h: int, w: int) -> np.ndarray:
    """One uint8 label image; where masks overlap the lowest id wins (written last, like Meta's
    ``put_per_obj_mask``)."""
    out = np.zeros((h, w), dtype=np.uint8)
    for obj in sorted(masks, reverse=True):
        out[masks[obj]] = obj
    return out


def track_video(
    predictor,
    item: VideoItem,
    out_dir: str | os.PathLike,
    *,
    per_object_png: bool = False,
    score_thresh: float = 0.0,
    non_overlap: bool | None = None,
    offload_state_to_cpu: bool = False,
) -> VideoResult:
    """Track the objects of one video (see the module's docstring) and write ``out_dir/<video>``.

    The folder is written under a temporary name and renamed into place when complete; a failure
    removes it. ``non_overlap`` (default: ``not per_object_png``, as Meta's ``vos_inference``):
    at each pixel only the highest-scoring object keeps a positive logit. Returns a :class:`VideoResult`.
    """
    import torch

    from . import tracking as trk

    if non_overlap is None:
        non_overlap = not per_object_png
    out_dir = Path(out_dir)
    final = out_dir / item.name
    h, w = item.height, item.width
    if not per_object_png and item.object_ids and max(item.object_ids) > 255:
        raise DatasetError(
            f"video {item.name}: object id {max(item.object_ids)} does not fit an 8-bit palette PNG; "
            "write per-object PNGs (per_object_png / --per-object-png)"
        )
    palette = item.palette or DAVIS_PALETTE
    stems = [p.stem for p in item.frames]
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / f"{TEMP_PREFIX}{item.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        if per_object_png:
            for obj in item.object_ids:
                (tmp / f"{obj:03d}").mkdir()
        empty = np.zeros((h, w), dtype=bool)

        def write(frame_idx: int, masks: dict[int, np.ndarray]) -> None:
            name = f"{stems[frame_idx]}.png"
            if per_object_png:
                for obj in item.object_ids:
                    m = masks.get(obj, empty)
                    _save_png(tmp / f"{obj:03d}" / name, m.astype(np.uint8), palette)
            else:
                _save_png(tmp / name, _compose(masks, h, w), palette)

        starts: dict[int, list[int]] = {}
        for obj, (k, _) in sorted(item.prompts.items()):
            starts.setdefault(k, []).append(obj)
        order = sorted(starts)
        for f in range(order[0]):  # before any object appears
            write(f, {})
        source = item.source or _FrameFiles(item.frames, item.name)
        state = predictor.init_state(source, offload_state_to_cpu=offload_state_to_cpu)
        with torch.inference_mode():
            for i, f in enumerate(order):
                for obj in starts[f]:
                    predictor.add_new_mask(state, frame_idx=f, obj_id=obj, mask=item.prompts[obj][1])
                stop = order[i + 1] - 1 if i + 1 < len(order) else item.num_frames - 1
                for frame_idx, obj_ids, logits in predictor.propagate_in_video(
                    state, start_frame_idx=f, max_frame_num_to_track=stop - f
                ):
                    if non_overlap:
                        logits = trk.non_overlapping(logits)
                    masks = (logits[:, 0] > score_thresh).cpu().numpy()
                    write(frame_idx, {int(o): masks[j] for j, o in enumerate(obj_ids)})
        try:
            os.rename(tmp, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)  # another worker finished this video first
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    n_obj = len(item.object_ids) if per_object_png else len(item.prompts)
    return VideoResult(item.name, item.num_frames, n_obj, time.perf_counter() - start, final)


# --- the whole dataset ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSource:
    """A model to load where it runs (each Ray worker loads its own): the arguments of
    :func:`samkit.load_model`. Loaded without the decoder's post-processing, as Meta's
    ``vos_inference`` builds its predictor."""

    model: str = "sam2.1-hiera-tiny"
    checkpoint: str | None = None
    device: str | None = None
    precision: str = "fp32"

    def load(self):
        from ..checkpoints import load_model

        return load_model(
            self.model,
            checkpoint=self.checkpoint,
            device=self.device,
            precision=self.precision,
            apply_postprocessing=False,
        )


@dataclass
class DatasetSummary:
    """What :func:`track_dataset` did: ``done`` videos tracked now, ``skipped`` found complete, of
    ``videos``; ``objects`` and ``frames`` count the videos tracked now."""

    videos: int = 0
    done: int = 0
    skipped: int = 0
    objects: int = 0
    frames: int = 0
    seconds: float = 0.0
    out_dir: Path = Path(".")
    results: list[VideoResult] = field(default_factory=list)

    def add(self, r: VideoResult) -> None:
        self.done += 1
        self.objects += r.objects
        self.frames += r.frames
        self.results.append(r)


def _predictor(model, keep_all_outputs: bool = False):
    """A VideoPredictor set up as Meta's vos_inference sets its own, which it builds without
    post-processing: no hole filling, and the memory of a prompted frame encodes the mask's
    probabilities, not the thresholded mask. Objects are made non-overlapping by track_video."""
    from ..modeling import SAM2Model
    from ..predictors.video import VideoPredictor

    if isinstance(model, VideoPredictor):
        return model
    if isinstance(model, ModelSource):
        model = model.load()
    if not isinstance(model, SAM2Model):
        raise TypeError(
            "track_dataset needs a samkit model (samkit.load_model), a VideoPredictor or a ModelSource, "
            f"got {type(model).__name__}"
        )
    return VideoPredictor(
        model,
        fill_hole_area=0,
        binarize_mask_from_pts_for_mem_enc=False,
        keep_all_outputs=keep_all_outputs,
        progress=False,
    )


def _model_identity(model) -> dict:
    if isinstance(model, ModelSource):
        from ..configs import resolve_name

        try:
            name = resolve_name(model.model)
        except (KeyError, ValueError):
            name = model.model  # an unknown name fails when the model loads
        ckpt = None
        if model.checkpoint and Path(model.checkpoint).is_file():
            from ..eval.report import file_sha256

            ckpt = file_sha256(model.checkpoint)
        return {"model": name, "precision": model.precision, "checkpoint_sha256": ckpt}
    m = getattr(model, "model", model)  # a VideoPredictor's model
    return {
        "model": getattr(getattr(m, "cfg", None), "name", None),
        "precision": getattr(getattr(m, "policy", None), "precision", None),
    }


def _check_job(out: Path, identity: dict) -> None:
    path = out / JOB_FILE
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and old != identity:
            diff = sorted(k for k in set(identity) | set(old) if old.get(k) != identity.get(k))
            raise DatasetError(
                f"{out} holds masks made with other settings (differs in: {', '.join(diff)}); "
                "use another output folder, or delete it to start afresh"
            )
    atomic_write(path, lambda p: p.write_text(json.dumps(identity, indent=2, sort_keys=True)))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _remove_temp_folders(out: Path) -> None:
    """A process killed mid-video leaves its temporary folder (``.tmp-<video>-<pid>-<hex>``): never a
    result, safe to drop once its process is gone; a live run's (another process on the same OUT) stays."""
    for p in out.glob(f"{TEMP_PREFIX}*"):
        if not p.is_dir():
            continue
        parts = p.name.rsplit("-", 2)
        pid = int(parts[1]) if len(parts) == 3 and parts[1].isdigit() else None
        if pid is not None and pid != os.getpid() and _pid_alive(pid):
            continue
        shutil.rmtree(p, ignore_errors=True)


def track_dataset(
    dataset: str | VideoDataset,
    out_dir: str | os.PathLike,
    model,
    *,
    videos: Sequence[str] | None = None,
    per_object_png: bool | None = None,
    score_thresh: float = 0.0,
    non_overlap: bool | None = None,
    engine: str = "local",
    ray=None,
    offload_state_to_cpu: bool = False,
    keep_all_outputs: bool = False,
    progress: bool = True,
) -> DatasetSummary:
    """Track every video of a dataset (see the module's docstring) into ``out_dir``; resumable.

    Args:
        dataset: a spec (``davis:FRAMES:ANNOTATIONS``, ``sav:ROOT``, ``sav:FRAMES:ANNOTATIONS``) or a
            :class:`VideoDataset`.
        out_dir: the output folder (created if missing); one sub-folder per video.
        model: a samkit model, a :class:`~samkit.VideoPredictor` (used as it is; build it with
            ``fill_hole_area=0, binarize_mask_from_pts_for_mem_enc=False`` to match Meta's
            ``vos_inference``) or a :class:`ModelSource`
            (loaded only when a video is left to do; what ``engine="ray"`` needs).
        videos: only these videos (names of frame folders), in this order.
        per_object_png: write a folder of 0/1 PNGs per object (SA-V) instead of one palette PNG per
            frame (DAVIS). Default: the input's layout.
        score_thresh: masks are ``logits > score_thresh``.
        non_overlap: one object per pixel (default: with palette PNGs, as Meta's ``vos_inference``).
        engine: ``local`` (this process) or ``ray`` (one video per task on a Ray actor pool;
            ``ray`` is a :class:`samkit.batch.RayOptions`: cluster address, CPUs / GPUs per actor and
            ``concurrency`` actors).
        offload_state_to_cpu / keep_all_outputs: passed to the predictor (see ``VideoPredictor``).
        progress: a progress bar over videos.

    Returns a :class:`DatasetSummary`. Data problems raise :class:`DatasetError`; the videos finished
    before stay, and a rerun goes on with the others.
    """
    from tqdm.auto import tqdm

    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    ds = parse_dataset_spec(dataset)
    if per_object_png is None:
        per_object_png = ds.per_object_input
    if non_overlap is None:
        non_overlap = not per_object_png
    score_thresh = float(score_thresh)
    if not np.isfinite(score_thresh):
        raise ValueError(f"score_thresh must be a finite number, got {score_thresh}")
    if engine == "ray" and not isinstance(model, ModelSource):
        raise TypeError("the Ray engine loads the model on each worker: pass a ModelSource")
    names = ds.video_names(videos)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _check_job(
        out,
        {
            "layout": "per-object" if per_object_png else "palette",
            "score_thresh": score_thresh,
            "non_overlap": bool(non_overlap),
            "dataset": ds.spec,
            **_model_identity(model),
        },
    )
    _remove_temp_folders(out)
    todo = [n for n in names if not (out / n).is_dir()]
    for n in todo:
        ds.check_video(n)
    summary = DatasetSummary(videos=len(names), skipped=len(names) - len(todo), out_dir=out)
    start = time.perf_counter()
    options = {
        "per_object_png": per_object_png,
        "score_thresh": score_thresh,
        "non_overlap": non_overlap,
        "offload_state_to_cpu": offload_state_to_cpu,
    }
    bar = tqdm(total=len(names), initial=summary.skipped, desc="videos", unit="video", disable=not progress)
    try:
        if todo and engine == "local":
            predictor = _predictor(model, keep_all_outputs)
            for name in todo:
                bar.set_postfix_str(name, refresh=False)
                summary.add(track_video(predictor, ds.load_video(name), out, **options))
                bar.update()
        elif todo:
            _run_ray(
                ds, todo, out, model, options, keep_all_outputs, ray, lambda r: (summary.add(r), bar.update())
            )
    finally:
        bar.close()
        summary.seconds = time.perf_counter() - start
    return summary


# --- Ray ------------------------------------------------------------------------------------------


class _TrackWorker:
    """A Ray actor: one model, loaded once; tracks one video per call."""

    def __init__(self, source: ModelSource, dataset: VideoDataset, out: str, options: dict, keep_all: bool):
        from ..runtime import tune_allocator

        tune_allocator()
        self.predictor = _predictor(source, keep_all)
        self.dataset, self.out, self.options = dataset, Path(out), options

    def run(self, name: str) -> dict:
        try:
            r = track_video(self.predictor, self.dataset.load_video(name), self.out, **self.options)
        except Exception as e:  # travels back as text: the driver raises it as one line
            return {"name": name, "error": str(e) or type(e).__name__, "data": isinstance(e, ValueError)}
        return {
            "name": name,
            "frames": r.frames,
            "objects": r.objects,
            "seconds": r.seconds,
            "out": str(r.out),
        }


def _run_ray(
    ds: VideoDataset,
    todo: Iterable[str],
    out: Path,
    source: ModelSource,
    options: dict,
    keep_all: bool,
    ray_options,
    on_result: Callable[[VideoResult], object],
) -> None:
    from ..batch.ray_engine import RayOptions, _import_ray

    ray = _import_ray()
    from ray.util import ActorPool

    ray_options = ray_options or RayOptions()
    todo = list(todo)
    started = False
    if not ray.is_initialized():
        ray.init(address=ray_options.address, log_to_driver=False, logging_level=logging.WARNING)
        started = True
    try:
        worker = ray.remote(num_cpus=ray_options.num_cpus, num_gpus=ray_options.num_gpus)(_TrackWorker)
        actors = [
            worker.remote(source, ds, str(out.resolve()), options, keep_all)
            for _ in range(min(ray_options.concurrency, len(todo)))
        ]
        try:
            for r in ActorPool(actors).map_unordered(lambda a, name: a.run.remote(name), todo):
                if "error" in r:
                    cls = DatasetError if r["data"] else RuntimeError
                    raise cls(r["error"] if r["name"] in r["error"] else f"video {r['name']}: {r['error']}")
                on_result(VideoResult(r["name"], r["frames"], r["objects"], r["seconds"], Path(r["out"])))
        finally:
            for a in actors:  # a video cut short leaves a temporary folder, removed by the next run
                ray.kill(a)
    finally:
        if started:
            ray.shutdown()
