"""StreamTracker: track objects in a stream of frames that arrive one at a time and never end.

:class:`~samkit.predictors.VideoPredictor` wants the whole video up front; a camera has no "whole
video". A :class:`StreamTracker` takes one frame per call and returns every object's mask on it:

    session = StreamTracker(model)
    masks = session.track(frame0, prompts={1: {"points": [[210, 350]], "labels": [1]}})
    for frame in camera:
        masks = session.track(frame)          # {obj_id: HxW bool}

Tracking is the video predictor's, driven the way a live user drives it: on each frame the objects
already known are tracked from memory first, then the prompts given with that frame are applied
(a new object's prompt starts it there, as ``add_new_points_or_box`` on an untracked frame; a prompt
for a known object is a correction of the mask just tracked) and folded into memory at once. So a
recorded clip fed frame by frame gives exactly the masks of the video predictor prompted on the same
frames and propagated between them (for clips of at least 16 frames: the video predictor scales the
object pointers' temporal positions by the clip's length when it is shorter).

Memory stays flat however long the stream runs: only what tracking can read back is kept (each
object's first prompted frame, and the memories and object pointers of the last ``keep_window``
frames, corrections included); older tracked frames are forgotten entirely, and only the current
frame's pixels are held.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Hashable, Mapping
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .._lru import LRU
from ..checkpoints import weights_sha256
from ..modeling import SAM2Model
from ..predictors.video import VideoPredictor
from ..prompts import Prompt, PromptError
from ..transforms import to_rgb_array
from ..video import tracking as trk
from ..video.io import FrameCache, VideoReadError, VideoSource
from ..video.state import ObjectTrack, VideoState

__all__ = ["StreamError", "StreamTracker"]

FORMAT = "samkit-stream/1"
# a stream has no end: the length its state reports (memory plans only need "longer than any window")
ENDLESS = 2**62


class StreamError(ValueError):
    """A frame, a prompt or a saved state that a stream cannot take; the message says why."""


class _CurrentFrame(VideoSource):
    """The frames of a stream as a video source that holds only the frame being tracked."""

    def __init__(self, height: int, width: int) -> None:
        self.height, self.width, self.name = height, width, "<stream>"
        self.index: int = -1
        self._frame: np.ndarray | None = None

    def put(self, index: int, frame: np.ndarray) -> None:
        self.index, self._frame = index, frame

    def __len__(self) -> int:
        return ENDLESS

    def frame(self, index: int) -> np.ndarray:
        if index != self.index or self._frame is None:
            raise VideoReadError(f"frame {index} of the stream is gone (only frame {self.index} is kept)")
        return self._frame


class StreamTracker:
    """Track objects frame by frame in a stream (a camera, a network stream, frames from anywhere).

    Args:
        model: a :class:`~samkit.modeling.SAM2Model` (``samkit.load_model``).
        fill_hole_area, non_overlap_masks, batch_objects: as for :class:`~samkit.VideoPredictor`.
        keep_window: tracked frames whose memory stays (default: the model's memory window, 16 for
            the official configs). Older tracked frames are forgotten, corrected ones too; each
            object's first prompted frame stays.

    ``track(frame, prompts)`` is the only call per frame; ``remove_object``, ``save`` and
    :meth:`restore` complete a session.
    """

    def __init__(
        self,
        model: SAM2Model,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        batch_objects: bool | None = None,
        keep_window: int | None = None,
    ) -> None:
        if not isinstance(model, SAM2Model):
            raise TypeError(
                f"StreamTracker needs a samkit SAM2Model (samkit.load_model), got {type(model).__name__}"
            )
        self.model = model
        self._settings = {
            "fill_hole_area": int(fill_hole_area),
            "non_overlap_masks": bool(non_overlap_masks),
            "batch_objects": batch_objects,
            "keep_window": keep_window,
        }
        self._predictor = VideoPredictor(
            model,
            fill_hole_area=fill_hole_area,
            non_overlap_masks=non_overlap_masks,
            batch_objects=batch_objects,
            keep_window=keep_window,
            feature_cache_size=2,
            frame_cache_size=1,
            progress=False,
            prefetch_frames=False,
        )
        cfg = model.cfg
        # what a memory plan can reach back to: num_maskmem frames at the memory stride, and pointers
        reach = max(cfg.max_obj_ptrs_in_encoder, cfg.num_maskmem * cfg.memory_temporal_stride_for_eval)
        if self._predictor.keep_window < reach:
            raise ValueError(
                f"keep_window must be at least {reach} (what tracking reads back), got {keep_window}"
            )
        self._source: _CurrentFrame | None = None
        self._state: VideoState | None = None
        self.frame_index = -1  # the last frame tracked
        self.resized_frames = 0  # frames of another size, resized to the first frame's

    # --- what a session is ------------------------------------------------------------------------

    @property
    def obj_ids(self) -> list:
        return [] if self._state is None else self._state.obj_ids

    @property
    def frame_size(self) -> tuple[int, int] | None:
        """(height, width) of the stream (of its first frame), or None before it."""
        return None if self._source is None else (self._source.height, self._source.width)

    @property
    def keep_window(self) -> int:
        return self._predictor.keep_window

    def state_nbytes(self) -> int:
        """Bytes of tensors the session holds for its objects (prompts' outputs and recent memories)."""
        return 0 if self._state is None else self._state.state_nbytes()

    def frames_held(self) -> int:
        """Frame outputs the session holds, over all objects (bounded by prompts + the keep window)."""
        if self._state is None:
            return 0
        return sum(len(o.cond) + len(o.non_cond) for o in self._state.objects.values())

    # --- tracking ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def track(self, frame, prompts: Mapping | None = None) -> dict[Hashable, np.ndarray]:
        """Track one frame: ``frame`` an HxWx3 uint8 RGB array (or PIL image); ``prompts`` maps an
        object id (int or str) to ``{"points": [[x, y], ...], "labels": [1 or 0, ...]}``, ``{"box":
        [x0, y0, x1, y1]}`` (both may be given) or ``{"mask": HxW bool}``, in the frame's pixels: an
        id not seen before starts a new object on this frame, a known one is corrected here.

        Returns every object's mask on this frame: ``{obj_id: HxW bool array}``.
        """
        image = self._frame(frame)
        todo = self._check_prompts(prompts, image.shape[1], image.shape[0])
        t = self.frame_index + 1
        if self._state is None:
            self._start(image.shape[0], image.shape[1])
        pred, state = self._predictor, self._state
        self._source.put(t, image)
        known = set(state.objects)
        try:
            if state.objects:
                # objects already known: tracked from memory (one step of propagate_in_video)
                for _ in pred.propagate_in_video(state, start_frame_idx=t, max_frame_num_to_track=0):
                    pass
            for obj_id, p in todo:
                if isinstance(p, np.ndarray):
                    pred.add_new_mask(state, t, obj_id, p)
                else:
                    pred.add_new_points_or_box(
                        state, t, obj_id, points=p.point_coords, labels=p.point_labels, box=p.box
                    )
            if todo:
                # fold the prompts into memory now (the next frame's propagation would do it first)
                pred.propagate_in_video_preflight(state)
        except BaseException:
            # out of memory, Ctrl-C...: the frame never happened, and the session stays usable
            self._rollback(t, known)
            raise
        self.frame_index = t
        self._forget(t)
        return self._masks(t)

    @torch.inference_mode()
    def remove_object(self, obj_id: Hashable) -> None:
        """Stop tracking an object (its memory is dropped)."""
        if obj_id not in self.obj_ids:
            raise StreamError(f"unknown object {obj_id!r}; the objects are {self.obj_ids}")
        self._predictor.remove_object(self._state, obj_id, need_output=False)

    def _start(self, height: int, width: int) -> None:
        pred = self._predictor
        self._source = _CurrentFrame(height, width)
        device = pred.device
        self._state = VideoState(
            video=self._source,
            frames=FrameCache(self._source, pred.image_size, 1, device),
            num_frames=ENDLESS,
            video_height=height,
            video_width=width,
            device=device,
            storage_device=device,
            features=LRU(pred.feature_cache_size),
        )

    def _frame(self, frame) -> np.ndarray:
        try:
            image = to_rgb_array(frame)
        except (TypeError, ValueError) as e:
            raise StreamError(f"frame {self.frame_index + 1}: {e}") from None
        if image.shape[0] < 1 or image.shape[1] < 1:
            raise StreamError(f"frame {self.frame_index + 1} is empty ({image.shape[1]}x{image.shape[0]})")
        size = self.frame_size
        if size is not None and image.shape[:2] != size:
            if self.resized_frames == 0:
                warnings.warn(
                    f"frame {self.frame_index + 1} is {image.shape[1]}x{image.shape[0]}, the stream "
                    f"{size[1]}x{size[0]}: such frames are resized to the stream's size (warned once)",
                    stacklevel=3,
                )
            self.resized_frames += 1
            from PIL import Image

            image = np.asarray(Image.fromarray(image).resize((size[1], size[0]), Image.BILINEAR))
        return image

    def _check_prompts(self, prompts: Mapping | None, width: int, height: int) -> list:
        """Every prompt checked before anything runs, so a bad one leaves the session as it was."""
        if not prompts:
            return []
        if not isinstance(prompts, Mapping):
            raise StreamError(f"prompts must map object ids to prompts, got {type(prompts).__name__}")
        known = set(self.obj_ids)
        todo = []
        for obj_id, spec in prompts.items():
            where = f"object {obj_id!r} on frame {self.frame_index + 1}"
            if isinstance(obj_id, bool) or not isinstance(obj_id, (int, np.integer, str)):
                raise StreamError(f"{where}: object ids must be ints or strings, got {type(obj_id).__name__}")
            obj_id = int(obj_id) if isinstance(obj_id, np.integer) else obj_id
            if not isinstance(spec, Mapping):
                raise StreamError(f"{where}: a prompt is a dict with 'points'/'labels', 'box' or 'mask'")
            extra = set(spec) - {"points", "labels", "box", "mask"}
            if extra:
                raise StreamError(f"{where}: unknown prompt keys {sorted(extra)}")
            if spec.get("mask") is not None:
                if len(spec) > 1:
                    raise StreamError(f"{where}: a mask prompt goes alone (no points or box with it)")
                m = np.asarray(spec["mask"])
                if m.ndim != 2 or m.shape != (height, width):
                    raise StreamError(
                        f"{where}: a mask must be {height}x{width} like the stream, got shape {m.shape}"
                    )
                if obj_id not in known and not m.any():
                    raise StreamError(f"{where}: a new object's mask is empty")
                todo.append((obj_id, m.astype(bool)))
                continue
            try:
                p = Prompt.from_fields(spec.get("points"), spec.get("labels"), spec.get("box"), where)
                p.check_bounds(width, height, where)
            except PromptError as e:
                raise StreamError(str(e)) from None
            if obj_id not in known and p.box is None and 1 not in p.labels:
                raise StreamError(
                    f"{where}: {obj_id!r} is not a tracked object (the objects are {sorted(known, key=str)}); "
                    "a new object needs a box or a positive click"
                )
            todo.append((obj_id, p))
        return todo

    @property
    def current_frame(self) -> np.ndarray | None:
        """The last frame tracked, as tracked (resized to the stream's size if it came in another)."""
        return None if self._source is None else self._source.frame(self._source.index)

    def _rollback(self, t: int, known: set) -> None:
        """Undo a frame that failed halfway: objects it started, every object's outputs and prompts on
        it, and the caches keyed by its index (the next frame reuses the index)."""
        state, pred = self._state, self._predictor
        for obj_id in [o for o in state.objects if o not in known]:
            del state.objects[obj_id]
        for obj in state.objects.values():
            for d in (obj.cond, obj.non_cond, obj.temp_cond, obj.temp_non_cond, obj.tracked):
                d.pop(t, None)
            obj.point_inputs.pop(t, None)
            obj.mask_inputs.pop(t, None)
        state.features = LRU(pred.feature_cache_size)
        state.frames = FrameCache(self._source, pred.image_size, 1, state.device)

    def _forget(self, t: int) -> None:
        """Drop what tracking will never read back: tracked frames that left the keep window (their
        memories, pointers and prompts), so the session's size does not grow with the stream."""
        oldest = t - self.keep_window
        for obj in self._state.objects.values():
            for f in [f for f in obj.non_cond if f < oldest]:
                del obj.non_cond[f]
            for d in (obj.tracked, obj.point_inputs, obj.mask_inputs):
                for f in [f for f in d if f < oldest and f not in obj.cond]:
                    del d[f]

    def _masks(self, t: int) -> dict[Hashable, np.ndarray]:
        state = self._state
        if not state.objects:
            return {}
        h, w = state.video_height, state.video_width
        logits = []
        for obj in state.objects.values():
            out = obj.cond.get(t) or obj.non_cond.get(t)
            if out is None or out.pred_masks is None:  # pragma: no cover - every object runs each frame
                logits.append(torch.full((1, 1, h, w), trk.NO_OBJ_SCORE, device=state.device))
            else:
                logits.append(
                    F.interpolate(
                        out.pred_masks.to(state.device), size=(h, w), mode="bilinear", align_corners=False
                    )
                )
        masks = torch.cat(logits)
        if self._predictor.non_overlap_masks:
            masks = trk.non_overlapping(masks)
        binary = (masks[:, 0] > 0).cpu().numpy()
        return dict(zip(state.obj_ids, binary))

    # --- save and restore -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike | None = None) -> bytes:
        """The session's state (objects, prompts, memories; model name and weights hash) as bytes;
        written to ``path`` too when given (atomically). :meth:`restore` continues from it."""
        doc = {
            "format": FORMAT,
            "model": self.model.cfg.name,
            "weights_sha256": weights_sha256(self.model),
            "settings": dict(self._settings),
            "frame_index": self.frame_index,
            "resized_frames": self.resized_frames,
            "size": list(self.frame_size) if self.frame_size else None,
            "maskmem_pos_enc": None if self._state is None else _cpu(self._state.maskmem_pos_enc),
            "objects": [] if self._state is None else [_object_doc(o) for o in self._state.objects.values()],
        }
        buf = io.BytesIO()
        torch.save(doc, buf)
        blob = buf.getvalue()
        if path is not None:
            from .._files import atomic_write

            atomic_write(path, lambda p: p.write_bytes(blob))
        return blob

    @classmethod
    def restore(cls, model: SAM2Model, saved: bytes | str | os.PathLike) -> StreamTracker:
        """A session continued from :meth:`save`'s bytes (or the file it wrote), on ``model``, which
        must be the model it was saved with (same variant and weights)."""
        if isinstance(saved, (str, os.PathLike)):
            try:
                saved = Path(saved).read_bytes()
            except OSError as e:
                raise StreamError(f"cannot read the saved stream {saved}: {e.strerror or e}") from None
        try:
            doc = torch.load(io.BytesIO(saved), map_location="cpu", weights_only=True)
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise ValueError("not a saved stream")
        except Exception as e:
            raise StreamError(f"not a samkit stream state ({FORMAT}): {e}") from None
        if doc["model"] != model.cfg.name:
            raise StreamError(
                f"the stream was saved with {doc['model']}, not {model.cfg.name}: load that model"
            )
        if doc["weights_sha256"] != weights_sha256(model):
            raise StreamError(
                f"the stream was saved with other {doc['model']} weights (sha256 {doc['weights_sha256'][:12]}..., "
                f"this model's are {weights_sha256(model)[:12]}...): load the checkpoint it was saved with"
            )
        session = cls(model, **doc["settings"])
        session.frame_index = doc["frame_index"]
        session.resized_frames = doc["resized_frames"]
        if doc["size"] is not None:
            session._start(*doc["size"])
            state = session._state
            dev = state.device
            state.maskmem_pos_enc = None if doc["maskmem_pos_enc"] is None else doc["maskmem_pos_enc"].to(dev)
            for d in doc["objects"]:
                state.objects[d["obj_id"]] = _object_from(d, dev, state.maskmem_pos_enc)
        return session


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().cpu()


_OUTPUT_FIELDS = ("pred_masks", "obj_ptr", "object_score_logits", "maskmem_features")


def _object_doc(obj: ObjectTrack) -> dict:
    def outputs(d):
        return {f: {k: _cpu(getattr(o, k)) for k in _OUTPUT_FIELDS} for f, o in d.items()}

    return {
        "obj_id": obj.obj_id,
        "point_inputs": {f: (_cpu(p), _cpu(lab)) for f, (p, lab) in obj.point_inputs.items()},
        "mask_inputs": {f: _cpu(m) for f, m in obj.mask_inputs.items()},
        "cond": outputs(obj.cond),
        "non_cond": outputs(obj.non_cond),
        "tracked": dict(obj.tracked),
    }


def _object_from(d: dict, device: torch.device, pos: torch.Tensor | None) -> ObjectTrack:
    def outputs(saved):
        return {
            f: trk.FrameOutput(
                **{k: None if o[k] is None else o[k].to(device) for k in _OUTPUT_FIELDS}, maskmem_pos_enc=pos
            )
            for f, o in saved.items()
        }

    obj = ObjectTrack(d["obj_id"])
    obj.point_inputs = {f: (p.to(device), lab.to(device)) for f, (p, lab) in d["point_inputs"].items()}
    obj.mask_inputs = {f: m.to(device) for f, m in d["mask_inputs"].items()}
    obj.cond, obj.non_cond = outputs(d["cond"]), outputs(d["non_cond"])
    obj.tracked = dict(d["tracked"])
    return obj
