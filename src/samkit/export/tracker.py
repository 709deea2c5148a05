"""Video tracking with the exported graphs in onnxruntime.

    tracker = OnnxVideoTracker("onnx/")                      # what `samkit export onnx` wrote
    prompts = {0: {1: {"points": [[210, 350]], "labels": [1]}}}
    for frame_idx, logits in tracker.track(frames, prompts):  # {obj_id: (H, W) float32 logits}
        masks = {obj: l > 0 for obj, l in logits.items()}

Every network step is an onnxruntime call (encoder, decoder, memory attention, memory encoder); the
bookkeeping -- which past frames and object pointers an object attends to -- is samkit's own
(:func:`samkit.video.tracking.memory_plan`), laid out in the exported fixed-size bank. Frames are taken
in order, as a live user drives tracking (:class:`samkit.StreamTracker`): on each frame the objects
already known are tracked from memory, then the frame's prompts are applied -- a new object starts
there, a known one is corrected (its tracked mask given to the decoder with the clicks). With every
prompt on the first frame this is ``VideoPredictor``'s prompt-then-propagate, and the logits equal
it up to float rounding (with ``fill_hole_area=0``: hole filling is a post-processing step left out
here). Mask prompts are not supported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F

from ..prompts import Prompt, PromptError
from ..transforms import preprocess_frame, to_rgb_array
from ..video import tracking as trk
from .onnx import GRAPHS, ExportError

__all__ = ["OnnxVideoTracker"]


@dataclass
class _Object:
    cond: dict[int, trk.FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, trk.FrameOutput] = field(default_factory=dict)

    def output(self, t: int) -> trk.FrameOutput | None:
        return self.cond.get(t) or self.non_cond.get(t)


class OnnxVideoTracker:
    """Track objects through frames with ``encoder.onnx``, ``decoder.onnx``, ``memory_encoder.onnx``
    and ``memory_attention.onnx`` of ``onnx_dir`` in onnxruntime (``providers``: its execution
    providers, default the CPU's; ``threads``: its threads per call, default onnxruntime's)."""

    def __init__(
        self, onnx_dir: str | os.PathLike, providers: list | None = None, threads: int | None = None
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ExportError("running ONNX graphs needs onnxruntime: pip install 'samkit[onnx]'") from None
        d = Path(onnx_dir)
        try:
            info = json.loads((d / "samkit-onnx.json").read_text())
        except (OSError, ValueError) as e:
            raise ExportError(f"{d} holds no samkit ONNX export (samkit-onnx.json: {e})") from None
        if "tracking" not in info or any(not (d / f"{g}.onnx").is_file() for g in GRAPHS):
            raise ExportError(f"{d} has no video graphs: export again with this samkit (samkit export onnx)")
        self.info = info
        self.image_size = int(info["image_size"])
        self.cond_slots = int(info["memory"]["cond_frames"])
        self.frame_slots = int(info["memory"]["frame_slots"])
        self.pointer_slots = int(info["memory"]["pointer_slots"])
        cfg = dict(info["tracking"])
        if cfg["max_cond_frames_in_attn"] == -1 or cfg["max_cond_frames_in_attn"] > self.cond_slots:
            # the bank holds this many prompted frames: the closest in time are attended
            cfg["max_cond_frames_in_attn"] = self.cond_slots
        self._plan_model = SimpleNamespace(cfg=SimpleNamespace(**cfg))
        self.cfg = self._plan_model.cfg
        opts = ort.SessionOptions()
        opts.log_severity_level = 3  # not the shape-merging notes of a loaded graph
        if threads is not None:
            opts.intra_op_num_threads = int(threads)
        self._s = {
            g: ort.InferenceSession(
                str(d / f"{g}.onnx"), opts, providers=providers or ["CPUExecutionProvider"]
            )
            for g in GRAPHS
        }
        self.reset()

    def reset(self) -> None:
        """Forget every object and frame."""
        self._objects: dict[Hashable, _Object] = {}
        self._t = 0
        self._size: tuple[int, int] | None = None

    @property
    def obj_ids(self) -> list:
        return list(self._objects)

    def track(
        self,
        frames: Iterable,
        prompts: Mapping[int, Mapping[Hashable, Prompt | Mapping]] | None = None,
        num_frames: int | None = None,
    ) -> Iterator[tuple[int, dict[Hashable, np.ndarray]]]:
        """Track through ``frames`` (HxWx3 uint8 arrays, or images ``to_rgb_array`` takes) with
        ``prompts`` {frame index: {obj_id: Prompt or {"points", "labels", "box"}}} in frame pixels.
        Yields (frame index, {obj_id: (H, W) float32 logits}). ``num_frames``: the video's length
        (default ``len(frames)`` where it has one), which scales the object pointers' temporal
        positions in clips shorter than 16 frames, as the video predictor does."""
        prompts = dict(prompts or {})
        if num_frames is None:
            num_frames = len(frames) if hasattr(frames, "__len__") else 2**62
        for t, frame in enumerate(frames):
            yield t, self.step(frame, prompts.get(t), num_frames=num_frames)

    def step(
        self, frame, prompts: Mapping[Hashable, Prompt | Mapping] | None = None, num_frames: int = 2**62
    ) -> dict[Hashable, np.ndarray]:
        """The next frame: every known object tracked from memory, then ``prompts`` applied. Returns
        {obj_id: (H, W) float32 logits}."""
        image = to_rgb_array(frame)
        h, w = image.shape[:2]
        if self._size is None:
            self._size = (h, w)
        elif self._size != (h, w):
            raise ValueError(f"frame {self._t} is {w}x{h}, the first was {self._size[1]}x{self._size[0]}")
        todo = self._check_prompts(prompts or {}, w, h)
        t = self._t
        x = preprocess_frame(image, self.image_size).numpy()[None]
        embed, hr0, hr1, top = self._s["encoder"].run(None, {"image": x})
        feats = (embed, hr0, hr1, top)
        for obj in self._objects.values():
            obj.non_cond[t] = self._frame(obj, t, feats, None, None, num_frames)
        for obj_id, (coords, labels) in todo:
            obj = self._objects.get(obj_id)
            if obj is None:
                obj = self._objects[obj_id] = _Object()
                obj.cond[t] = self._frame(obj, t, feats, (coords, labels), None, num_frames, init=True)
            else:
                # a correction: the clicks with the mask just tracked, as the video predictor's
                prev = np.clip(obj.non_cond[t].pred_masks, -32.0, 32.0)
                obj.non_cond[t] = self._frame(obj, t, feats, (coords, labels), prev, num_frames)
        self._t += 1
        out = {}
        for obj_id, obj in self._objects.items():
            low = torch.from_numpy(obj.output(t).pred_masks)
            out[obj_id] = F.interpolate(low, size=(h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
        self._forget(t)
        return out

    # --- one object on one frame ------------------------------------------------------------------

    def _frame(self, obj, t, feats, points, prev_logits, num_frames, init=False) -> trk.FrameOutput:
        embed, hr0, hr1, top = feats
        cfg = self.cfg
        pix = embed if init else self._attend(obj, t, top, num_frames)
        if points is None:
            coords, labels = np.zeros((1, 1, 2), np.float32), -np.ones((1, 1), np.float32)
        else:
            coords, labels = points
        n = 0 if points is None else labels.shape[1]
        multimask = (
            cfg.multimask_output_in_sam
            and (init or cfg.multimask_output_for_tracking)
            and cfg.multimask_min_pt_num <= n <= cfg.multimask_max_pt_num
        )
        s4 = self.image_size // 4
        iou, low3, _, score, single, _, ptrs = self._s["decoder"].run(
            None,
            {
                "image_embed": pix,
                "high_res_feats_0": hr0,
                "high_res_feats_1": hr1,
                "point_coords": coords,
                "point_labels": labels,
                "mask_input": np.zeros((1, 1, s4, s4), np.float32) if prev_logits is None else prev_logits,
                "has_mask_input": np.array([0.0 if prev_logits is None else 1.0], np.float32),
                "orig_im_size": np.array([s4, s4], np.float32),
            },
        )
        if multimask:
            best = int(np.argmax(iou[0]))
            low, ptr = low3[:, best : best + 1], ptrs[:, 0]
        else:
            low, ptr = single, ptrs[:, 1]
        low = np.where(score[:, :, None, None] > 0, low, np.float32(trk.NO_OBJ_SCORE)).astype(np.float32)
        mem = self._s["memory_encoder"].run(
            None,
            {
                "vision_feats": top,
                "low_res_mask": low,
                "object_score_logits": score,
                # prompted masks are binarised for memory, tracked ones go through a sigmoid
                "is_mask_from_points": np.array([0.0 if points is None else 1.0], np.float32),
            },
        )[0]
        return trk.FrameOutput(
            pred_masks=low,
            obj_ptr=ptr,
            object_score_logits=score,
            maskmem_features=mem,
            maskmem_pos_enc=np.empty(0),  # (a constant inside the memory attention graph)
        )

    def _attend(self, obj: _Object, t: int, top: np.ndarray, num_frames: int) -> np.ndarray:
        """The frame's features conditioned on the object's memory, in the fixed-size bank."""
        plan = trk.memory_plan(self._plan_model, t, obj.cond, obj.non_cond, num_frames, reverse=False)
        k, p = self.frame_slots, self.pointer_slots
        c = top.shape[1]
        first = next(iter(obj.cond.values()))
        feats = np.zeros((1, k, *first.maskmem_features.shape[1:]), np.float32)
        tpos = np.zeros((1, k), np.int64)
        valid = np.zeros((1, k), np.float32)
        for slot, t_pos, f, is_cond in trk.bank_layout(plan, self.cond_slots):
            feats[0, slot] = (obj.cond if is_cond else obj.non_cond)[f].maskmem_features[0]
            tpos[0, slot], valid[0, slot] = t_pos, 1.0
        ptrs = np.zeros((1, p, c), np.float32)
        pos = np.zeros((1, p), np.float32)
        pvalid = np.zeros((1, p), np.float32)
        scale = trk.pointer_scale(self.cfg, num_frames)
        for j, (d, f, is_cond) in enumerate(plan.pointers):
            ptrs[0, j] = (obj.cond if is_cond else obj.non_cond)[f].obj_ptr[0]
            pos[0, j], pvalid[0, j] = d / scale, 1.0
        return self._s["memory_attention"].run(
            None,
            {
                "vision_feats": top,
                "memory_feats": feats,
                "memory_tpos": tpos,
                "memory_valid": valid,
                "obj_ptrs": ptrs,
                "obj_ptr_pos": pos,
                "obj_ptr_valid": pvalid,
            },
        )[0]

    # --- bookkeeping ------------------------------------------------------------------------------

    def _check_prompts(self, prompts: Mapping, width: int, height: int) -> list:
        """Prompts in the model's frame: [(obj_id, (coords (1, N, 2), labels (1, N)))], checked first."""
        out = []
        for obj_id, p in prompts.items():
            where = f"frame {self._t}, object {obj_id}"
            if isinstance(p, Mapping):
                if "mask" in p:
                    raise PromptError(f"{where}: mask prompts are not supported by the ONNX tracker")
                p = Prompt.from_fields(p.get("points"), p.get("labels"), p.get("box"), where=where)
            elif not isinstance(p, Prompt):
                raise PromptError(f"{where}: a prompt is a Prompt or a dict with points/labels/box")
            p.check_bounds(width, height, where)
            pts, labels = list(p.points), list(p.labels)
            if p.box is not None:  # a box comes first, as two points labelled 2 and 3
                pts = [p.box[:2], p.box[2:]] + pts
                labels = [2, 3] + labels
            xy = np.asarray(pts, np.float32) / np.array([width, height], np.float32) * self.image_size
            out.append((obj_id, (xy[None].astype(np.float32), np.asarray([labels], np.float32))))
        return out

    def _forget(self, t: int) -> None:
        """Drop what tracking can no longer read: tracked frames older than the memory and pointer
        windows (prompted frames are kept)."""
        window = max(
            self.cfg.num_maskmem * self.cfg.memory_temporal_stride_for_eval, self.cfg.max_obj_ptrs_in_encoder
        )
        for obj in self._objects.values():
            obj.non_cond.pop(t - window, None)
