"""Track prompted objects through a video and write the results to a folder (``samkit track``).

Output folder:
  masks/<obj_id>/<frame:05d>.png   one binary PNG per object and frame, each written atomically;
  annotations.json                 COCO RLE masks per frame and object in the SA-V "masklet" layout;
  overlay.mp4                      the video with every object's mask drawn in its own colour.

If reading or tracking fails halfway, what was written stays intact, ``annotations.json`` records the
frames done (``"complete": false`` and where it stopped) and :class:`TrackingInterrupted` says where.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import rle
from .._files import atomic_write
from ..predictors.video import VideoPredictor
from ..prompts import Prompt, parse_frame_prompt
from ..visualize import PALETTE, mask_to_png, overlay_masks
from .io import VideoSource

__all__ = ["FramePrompt", "TrackResult", "TrackingInterrupted", "parse_frame_prompts", "track_to_folder"]


@dataclass(frozen=True)
class FramePrompt:
    """One object's prompt (:class:`samkit.prompts.Prompt`) on one frame."""

    frame: int
    obj_id: int | str
    prompt: Prompt


def parse_frame_prompts(texts: list[str]) -> list[FramePrompt]:
    """``FRAME:OBJ:X,Y[:LABEL]`` / ``FRAME:OBJ:box=X0,Y0,X1,Y1`` texts (see
    :func:`samkit.prompts.parse_frame_prompt`), the clicks and box of each object and frame merged."""
    merged: dict[tuple[int, int | str], Prompt] = {}
    for text in texts:
        frame, obj_id, prompt = parse_frame_prompt(text)
        key = (frame, obj_id)
        merged[key] = (
            merged[key].merged(prompt, f"object {obj_id} on frame {frame}") if key in merged else prompt
        )
    return [FramePrompt(f, o, p) for (f, o), p in merged.items()]


class TrackingInterrupted(RuntimeError):
    """Tracking stopped before the end; ``frames_done`` were written."""

    def __init__(self, message: str, stopped_at: int | None, frames_done: int) -> None:
        super().__init__(message)
        self.stopped_at = stopped_at
        self.frames_done = frames_done


@dataclass
class TrackResult:
    out_dir: Path
    num_frames: int
    frames_done: int
    obj_ids: list
    annotations: Path
    overlay: Path | None


def _write_annotations(
    path: Path,
    source: VideoSource,
    obj_ids: list,
    per_frame: dict[int, list[dict]],
    complete: bool,
    stopped_at: int | None,
    error: str | None,
    labels: list | None = None,
) -> None:
    frames = sorted(per_frame)
    present = {i: [f for f in frames if rle.area(per_frame[f][i]) > 0] for i in range(len(obj_ids))}
    doc = {
        "video_id": Path(source.name).stem,
        "video_frame_count": len(source),
        "video_height": source.height,
        "video_width": source.width,
        "video_fps": getattr(source, "fps", None),
        "complete": complete,
        "stopped_at_frame": stopped_at,
        "error": error,
        "masklet_id": [str(o) if not isinstance(o, int) else o for o in obj_ids],
        "masklet_num": len(obj_ids),
        **({"masklet_label": list(labels)} if labels is not None else {}),
        "masklet_first_appeared_frame": [present[i][0] if present[i] else None for i in range(len(obj_ids))],
        "masklet_frame_count": [len(present[i]) for i in range(len(obj_ids))],
        "frame_indices": frames,
        # masklet[k][j]: COCO RLE of object j on frame frame_indices[k]
        "masklet": [per_frame[f] for f in frames],
    }
    atomic_write(path, lambda p: p.write_text(json.dumps(doc)))


def track_to_folder(
    predictor: VideoPredictor,
    video,
    prompts: list[FramePrompt],
    out_dir: str | Path,
    write_pngs: bool = True,
    write_overlay: bool = True,
    offload_state_to_cpu: bool = False,
    progress: bool = True,
    start_frame: int | None = None,
    max_frames: int | None = None,
    reverse_only: bool = False,
) -> TrackResult:
    """Prompt, propagate forward (then backward from the first prompted frame) and write the results.

    ``start_frame``: propagate from this frame instead of the first prompted one; ``max_frames``: at
    most this many frames after the start in each direction; ``reverse_only``: only the backward pass.
    If tracking stops halfway (an error, Ctrl-C), the frames done are kept: their PNGs,
    ``annotations.json`` marked incomplete and the overlay video of those frames.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if not prompts:
        raise ValueError("give at least one prompt")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    state = predictor.init_state(video, offload_state_to_cpu=offload_state_to_cpu)
    source = state.video
    for p in prompts:
        if not 0 <= p.frame < state.num_frames:
            raise ValueError(
                f"prompt frame {p.frame} out of range: the video has {state.num_frames} frames "
                f"(0..{state.num_frames - 1})"
            )
        p.prompt.check_bounds(state.video_width, state.video_height, f"frame {p.frame}")
    if start_frame is not None and not 0 <= start_frame < state.num_frames:
        raise ValueError(
            f"start frame {start_frame} out of range: the video has {state.num_frames} frames "
            f"(0..{state.num_frames - 1})"
        )
    for p in sorted(prompts, key=lambda p: p.frame):
        q = p.prompt
        predictor.add_new_points_or_box(
            state, p.frame, p.obj_id, points=q.point_coords, labels=q.point_labels, box=q.box
        )
    obj_ids = state.obj_ids
    per_frame: dict[int, list[dict]] = {}
    start = min(p.frame for p in prompts) if start_frame is None else start_frame
    current: int | None = None
    ann = out / "annotations.json"
    limit = {} if max_frames is None else {"max_frame_num_to_track": max_frames}
    forward = [dict(start_frame_idx=start, reverse=False, **limit)] if not reverse_only else []
    backward = [dict(start_frame_idx=start, reverse=True, **limit)] if start > 0 or reverse_only else []
    try:
        for kwargs in forward + backward:
            for f, _, logits in predictor.propagate_in_video(state, **kwargs):
                current = f
                masks = (logits[:, 0] > 0).cpu().numpy()
                if write_pngs:
                    for obj_id, m in zip(obj_ids, masks):
                        d = out / "masks" / str(obj_id)
                        d.mkdir(parents=True, exist_ok=True)
                        atomic_write(d / f"{f:05d}.png", lambda p, m=m: mask_to_png(m).save(p, format="PNG"))
                per_frame[f] = [rle.encode(m) for m in masks]
                current = None
    except (Exception, KeyboardInterrupt) as e:
        stopped = current if current is not None else (max(per_frame) + 1 if per_frame else start)
        msg = (
            f"stopped at frame {stopped}: {e}"
            if str(e)
            else f"stopped at frame {stopped} ({type(e).__name__})"
        )
        _write_annotations(ann, source, obj_ids, per_frame, False, stopped, str(e) or type(e).__name__)
        if write_overlay and per_frame:
            try:  # the frames done, so an interrupted run still has its video
                _write_overlay(out / "overlay.mp4", source, obj_ids, per_frame, progress)
            except Exception:  # pragma: no cover - the original error matters more
                pass
        raise TrackingInterrupted(
            f"{msg}; {len(per_frame)} frames written to {out}", stopped, len(per_frame)
        ) from e
    _write_annotations(ann, source, obj_ids, per_frame, True, None, None)
    overlay = None
    if write_overlay:
        overlay = out / "overlay.mp4"
        _write_overlay(overlay, source, obj_ids, per_frame, progress)
    return TrackResult(out, state.num_frames, len(per_frame), obj_ids, ann, overlay)


def _write_overlay(
    path: Path, source: VideoSource, obj_ids: list, per_frame: dict[int, list[dict]], progress: bool = True
) -> None:
    """An H.264 video of the tracked frames with the masks drawn (frames decoded again, one at a time)."""
    import av
    from tqdm.auto import tqdm

    fps = getattr(source, "fps", None) or 10.0
    w, h = source.width - source.width % 2, source.height - source.height % 2  # yuv420p needs even sizes

    def write(tmp: Path) -> None:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=round(float(fps)))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.options = {"crf": "23", "preset": "veryfast"}
            for f in tqdm(sorted(per_frame), desc="write overlay", disable=not progress):
                image = source.frame(f)
                masks = [rle.decode(r) for r in per_frame[f]]
                pic = np.asarray(overlay_masks(image, masks, colors=PALETTE))[:h, :w]
                for packet in stream.encode(
                    av.VideoFrame.from_ndarray(np.ascontiguousarray(pic), format="rgb24")
                ):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)

    atomic_write(path, write)
