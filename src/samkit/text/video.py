"""Text prompts on videos: detect what the words name, track it, and give newcomers new ids.

Grounded-SAM-2's continuous-id scheme on samkit's VideoPredictor: the detector runs on the first
frame (and every ``detect_every`` frames); a detection whose mask overlaps a tracked object's mask on
that frame by more than ``match_iou`` is that object, any other starts a new object with the next free
id, prompted with its box. All objects are tracked together in one session (batched, bounded memory).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import rle
from .._files import atomic_write
from ..visualize import mask_to_png
from .detector import TextError, parse_phrases
from .predictor import TextPredictor, masks_for_boxes


@dataclass
class TextTrackResult:
    out_dir: Path
    num_frames: int
    frames_done: int
    obj_ids: list
    labels: list[str]
    annotations: Path
    overlay: Path | None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 0.0


def track_text(
    predictor,
    video,
    text_predictor: TextPredictor,
    text: str,
    out_dir: str | Path,
    *,
    detect_every: int | None = None,
    match_iou: float = 0.5,
    write_pngs: bool = True,
    write_overlay: bool = True,
    progress: bool = True,
    offload_state_to_cpu: bool = False,
) -> TextTrackResult:
    """Track everything ``text`` names through ``video`` and write ``samkit track``'s folder
    (``masks/<id>/<frame>.png``, ``annotations.json`` with a ``masklet_label`` per object, ``overlay.mp4``).

    Masks are written frame by frame (only RLEs stay in memory); if tracking stops halfway,
    ``annotations.json`` records the frames done, marked ``"complete": false``."""
    from ..video.output import _write_annotations, _write_overlay

    parse_phrases(text)
    if detect_every is not None and detect_every < 1:
        raise TextError(f"detect_every must be >= 1, got {detect_every}")
    if not 0.0 <= match_iou <= 1.0:
        raise TextError(f"match_iou must be in [0, 1], got {match_iou}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = predictor.init_state(video, offload_state_to_cpu=offload_state_to_cpu)
    source, n = state.video, state.num_frames
    starts = list(range(0, n, detect_every)) if detect_every else [0]
    labels: dict[int, str] = {}
    per_frame: dict[int, dict[int, dict]] = {}  # frame -> {object id: RLE}: small, written at the end
    at_start: dict[int, np.ndarray] = {}  # the tracked masks on the next detection frame, to match against
    next_id = 1
    ann = out / "annotations.json"
    empty = rle.encode(np.zeros((state.video_height, state.video_width), bool))

    def annotations(complete: bool, stopped: int | None = None, error: str | None = None) -> None:
        ids = sorted(labels)
        frames = {f: [masks.get(o, empty) for o in ids] for f, masks in sorted(per_frame.items())}
        _write_annotations(
            ann, source, ids, frames, complete, stopped, error, labels=[labels[o] for o in ids]
        )

    current = 0
    try:
        for i, s in enumerate(starts):
            stop = starts[i + 1] if i + 1 < len(starts) else n - 1
            current = s
            frame = source.frame(s)
            d = text_predictor.detect([frame], text)[0]
            if len(d):
                text_predictor.predictor.set_image(frame)
                masks, _ = masks_for_boxes(text_predictor.predictor, d.boxes, frame.shape[:2])
                here = dict(at_start)
                for box, label, mask in zip(d.boxes, d.labels, masks):
                    if any(_iou(mask, m) > match_iou for m in here.values()):
                        continue  # an object already tracked keeps its id
                    predictor.add_new_points_or_box(state, s, next_id, box=box)
                    labels[next_id] = label
                    here[next_id] = mask
                    next_id += 1
            if not labels:
                continue  # nothing to track yet
            # through the next detection frame, so that its tracked masks are there to match against
            for f, ids, logits in predictor.propagate_in_video(
                state, start_frame_idx=s, max_frame_num_to_track=stop - s
            ):
                current = f
                m = (logits[:, 0] > 0).cpu().numpy()
                frame_masks = {int(o): m[j] for j, o in enumerate(ids)}
                if f == stop:
                    at_start = frame_masks
                if write_pngs:
                    for o, mask in frame_masks.items():
                        folder = out / "masks" / str(o)
                        folder.mkdir(parents=True, exist_ok=True)
                        atomic_write(
                            folder / f"{f:05d}.png",
                            lambda p, mask=mask: mask_to_png(mask).save(p, format="PNG"),
                        )
                per_frame[f] = {o: rle.encode(mask) for o, mask in frame_masks.items()}
    except (Exception, KeyboardInterrupt) as e:
        annotations(False, current, str(e) or type(e).__name__)  # what was done stays readable
        raise
    annotations(True)
    obj_ids = sorted(labels)
    overlay = None
    if write_overlay and per_frame:
        overlay = out / "overlay.mp4"
        empty_all = {f: [masks.get(o, empty) for o in obj_ids] for f, masks in sorted(per_frame.items())}
        _write_overlay(overlay, source, obj_ids, empty_all, progress)
    return TextTrackResult(out, n, len(per_frame), obj_ids, [labels[o] for o in obj_ids], ann, overlay)
