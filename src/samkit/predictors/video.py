"""VideoPredictor: click objects on any frame, then track them through the video.

Same methods and arguments as the reference ``SAM2VideoPredictor`` (``init_state``,
``add_new_points_or_box``, ``add_new_mask``, ``propagate_in_video``, ``clear_all_prompts_in_frame``,
``remove_object``, ``reset_state``), with three differences that keep long videos affordable:

* **Frames are decoded lazily** (PyAV for video files) through a small LRU cache of preprocessed
  frames, instead of decoding the whole video into memory up front.
* **Per-frame state is bounded** (the memory policy). Conditioning frames (those with prompts)
  keep everything. A tracked frame keeps its memory features and low-res logits while it lies
  within ``keep_window`` frames of the tracking front or of one of its object's conditioning
  frames — everything tracking can read back; further away they are dropped once the frame has
  been returned, and only its object pointer and object score stay (a few KB). A later click on
  such a frame starts without the previous logits, and a frame returned by ``add_new_points_or_box``
  shows such an object as absent. ``keep_all_outputs=True`` keeps everything, as the reference does.
* **Objects can be batched**: objects whose memory covers the same frames run through memory
  attention, the decoder and the memory encoder together on each frame (``batch_objects``; on by
  default on CUDA only: on the CPU the attention is compute-bound and one batch measured slower).

State is a typed :class:`VideoState` (it also answers ``state["num_frames"]``-style lookups of the
reference's dict for the common keys).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .._lru import LRU
from ..modeling import SAM2Model
from ..prompts import as_float_tensor, box_tensor, point_tensors
from ..transforms import fill_small_regions
from ..video import tracking as trk
from ..video.io import FrameCache, open_video
from ..video.state import ObjectTrack, VideoState
from ._base import ModelBacked
from ._graphs import step_graphs_for

__all__ = ["ObjectTrack", "VideoPredictor", "VideoState"]


class VideoPredictor(ModelBacked):
    """Track objects through a video with a SAM 2 model.

    Args:
        model: a :class:`~samkit.modeling.SAM2Model`.
        fill_hole_area: fill holes up to this area in the low-res masks (8, as the reference's video builder).
        non_overlap_masks: let each pixel belong to at most one object in the returned masks.
        clear_non_cond_mem_around_input: after a correction click, drop the object's tracked memory
            within ``num_maskmem`` frames of it.
        add_all_frames_to_correct_as_cond: corrections on tracked frames become conditioning frames.
        binarize_mask_from_pts_for_mem_enc: memory of clicked frames sees the thresholded mask (reference: on).
        batch_objects: run objects with the same memory layout as one batch (results are the same).
            Default: on CUDA, where one large batch fills the GPU; off on the CPU, where memory
            attention is compute-bound and batching measured slower (benchmarks/bench_video_objects.py).
        keep_all_outputs: keep every frame's memory and logits (the reference's behaviour; unbounded).
        keep_window: frames around the tracking front and prompted frames whose state is kept (default 16).
        feature_cache_size / frame_cache_size: frames whose backbone features / pixels stay cached.
        progress: show a progress bar while propagating.
        prefetch_frames: read and resize the next frame in a background thread while the current one
            is tracked (default: on a GPU, where that CPU work otherwise leaves the GPU idle).
        static_memory: give memory attention a fixed-size memory bank (slots for conditioning frames,
            recent frames and object pointers, with a validity mask) instead of one that grows during
            the first frames: the step's shapes then do not depend on the frame index, and objects
            with different memories batch together. The same masks (attention over the valid slots;
            logits equal up to rounding). Off by default: on the CPU the empty slots cost compute.
    """

    def __init__(
        self,
        model: SAM2Model,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        clear_non_cond_mem_around_input: bool = False,
        add_all_frames_to_correct_as_cond: bool = False,
        binarize_mask_from_pts_for_mem_enc: bool = True,
        batch_objects: bool | None = None,
        keep_all_outputs: bool = False,
        keep_window: int | None = None,
        feature_cache_size: int = 4,
        frame_cache_size: int = 8,
        progress: bool = True,
        prefetch_frames: bool | None = None,
        static_memory: bool = False,
    ) -> None:
        if not isinstance(model, SAM2Model):
            raise TypeError(
                f"VideoPredictor needs a samkit SAM2Model (samkit.load_model), got {type(model).__name__}"
            )
        if fill_hole_area < 0:
            raise ValueError(f"fill_hole_area must be >= 0, got {fill_hole_area}")
        self.model = model
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.clear_non_cond_mem_around_input = clear_non_cond_mem_around_input
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond
        self.binarize_mask_from_pts_for_mem_enc = binarize_mask_from_pts_for_mem_enc
        self.batch_objects = model.policy.batch_objects if batch_objects is None else batch_objects
        self.keep_all_outputs = keep_all_outputs
        cfg = model.cfg
        self.keep_window = (
            keep_window
            if keep_window is not None
            else max(cfg.max_obj_ptrs_in_encoder, cfg.num_maskmem * cfg.memory_temporal_stride_for_eval)
        )
        self.feature_cache_size = max(1, feature_cache_size)
        self.frame_cache_size = max(1, frame_cache_size)
        self.progress = progress
        self.prefetch_frames = model.policy.prefetch_frames if prefetch_frames is None else prefetch_frames
        self.static_memory = static_memory

    # --- session ------------------------------------------------------------------------------

    @torch.inference_mode()
    def init_state(
        self,
        video_path,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
    ) -> VideoState:
        """Open a video (file path, folder of frames, list of frames) and start a session.

        ``async_loading_frames`` is accepted for compatibility; frames are always read lazily.
        """
        source = open_video(video_path)
        device = self.device
        frames_device = torch.device("cpu") if offload_video_to_cpu else device
        return VideoState(
            video=source,
            frames=FrameCache(source, self.image_size, self.frame_cache_size, frames_device),
            num_frames=len(source),
            video_height=source.height,
            video_width=source.width,
            device=device,
            storage_device=torch.device("cpu") if offload_state_to_cpu else device,
            offload_video_to_cpu=offload_video_to_cpu,
            offload_state_to_cpu=offload_state_to_cpu,
            features=LRU(self.feature_cache_size),
        )

    @torch.inference_mode()
    def reset_state(self, inference_state: VideoState) -> None:
        """Remove every object, prompt and result (the video stays open)."""
        state = self._check_state(inference_state)
        for obj in state.objects.values():
            obj.clear_outputs()
        state.objects.clear()

    # --- prompts --------------------------------------------------------------------------------

    @torch.inference_mode()
    def add_new_points_or_box(
        self,
        inference_state: VideoState,
        frame_idx: int,
        obj_id: Hashable,
        points=None,
        labels=None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box=None,
    ) -> tuple[int, list, torch.Tensor]:
        """Add clicks (and/or a box) for one object on one frame.

        points: (N, 2) (x, y) in video pixels (or in [0, 1] with ``normalize_coords=False``);
        labels: (N,) 1 foreground / 0 background; box: (4,) x0, y0, x1, y1.
        Returns (frame_idx, obj_ids, masks (num_objects, 1, H, W) logits at video resolution).
        """
        state = self._check_state(inference_state)
        frame_idx = self._check_frame(state, frame_idx)
        if (points is not None) != (labels is not None):
            raise ValueError("points and labels must be provided together")
        if points is None and box is None:
            raise ValueError("at least one of points or box must be provided as input")
        if points is None:
            pts, lab = torch.zeros(1, 0, 2), torch.zeros(1, 0, dtype=torch.int32)
        else:
            # (N, 2) points and (N,) labels; a leading axis of 1 is accepted, as the reference does
            pts, lab = as_float_tensor(points, "points"), as_float_tensor(labels, "labels")
            pts = pts[0] if pts.ndim == 3 and pts.shape[0] == 1 else pts
            lab = lab[0] if lab.ndim == 2 and lab.shape[0] == 1 else lab
            pts, lab = point_tensors(pts, lab, "points", "labels", batched=False)
            pts, lab = pts[None], lab[None]
        if box is not None:
            if not clear_old_points:
                raise ValueError(
                    "cannot add box without clearing old points, since box prompt must be provided "
                    "before any point prompt (please use clear_old_points=True instead)"
                )
            b = box_tensor(box, batched=False)
            pts = torch.cat([b.reshape(1, 2, 2), pts], dim=1)
            lab = torch.cat([torch.tensor([[2, 3]], dtype=torch.int32), lab], dim=1)
        if normalize_coords:
            pts = pts / torch.tensor([state.video_width, state.video_height])
        pts = (pts * self.image_size).to(state.device)
        lab = lab.to(state.device)

        obj = self._object(state, obj_id, create=True)
        old = None if clear_old_points else obj.point_inputs.get(frame_idx)
        if old is not None:
            pts, lab = torch.cat([old[0], pts], dim=1), torch.cat([old[1], lab], dim=1)
        obj.point_inputs[frame_idx] = (pts, lab)
        obj.mask_inputs.pop(frame_idx, None)
        return self._interact(state, obj, frame_idx, points=(pts, lab), mask=None)

    def add_new_points(self, *args, **kwargs):
        """Deprecated alias of :meth:`add_new_points_or_box`."""
        return self.add_new_points_or_box(*args, **kwargs)

    @torch.inference_mode()
    def add_new_mask(
        self, inference_state: VideoState, frame_idx: int, obj_id: Hashable, mask
    ) -> tuple[int, list, torch.Tensor]:
        """Give an object's mask on a frame: a (H, W) boolean array (any size; resized to the model)."""
        state = self._check_state(inference_state)
        frame_idx = self._check_frame(state, frame_idx)
        m = as_float_tensor(mask, "mask")
        if m.dim() != 2 or m.shape[0] < 1 or m.shape[1] < 1:
            raise ValueError(f"mask must be a 2-D (H, W) array, got shape {tuple(m.shape)}")
        m = (m > 0).float()[None, None].to(state.device)
        s = self.image_size
        if tuple(m.shape[-2:]) != (s, s):
            m = F.interpolate(m, size=(s, s), mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).float()
        obj = self._object(state, obj_id, create=True)
        obj.mask_inputs[frame_idx] = m
        obj.point_inputs.pop(frame_idx, None)
        return self._interact(state, obj, frame_idx, points=None, mask=m)

    def _interact(
        self, state: VideoState, obj: ObjectTrack, frame_idx: int, points, mask
    ) -> tuple[int, list, torch.Tensor]:
        """Run the model on a prompted frame (without memory encoding) and return all objects' masks."""
        is_init = frame_idx not in obj.tracked
        reverse = False if is_init else obj.tracked[frame_idx]
        is_cond = is_init or self.add_all_frames_to_correct_as_cond
        prev_logits = None
        if points is not None:
            prev = obj.output(frame_idx, temp_cond_first=is_cond)
            if prev is not None and prev.pred_masks is not None:
                prev_logits = torch.clamp(prev.pred_masks.to(state.device), -32.0, 32.0)
        out, _ = self._run_frame(
            state,
            frame_idx,
            [obj],
            is_init,
            points,
            mask,
            reverse,
            run_mem_encoder=False,
            prev_logits=prev_logits,
        )
        (obj.temp_cond if is_cond else obj.temp_non_cond)[frame_idx] = out
        return frame_idx, state.obj_ids, self._consolidated_masks(state, frame_idx, is_cond)

    @torch.inference_mode()
    def clear_all_prompts_in_frame(
        self, inference_state: VideoState, frame_idx: int, obj_id: Hashable, need_output: bool = True
    ):
        """Remove an object's prompts on a frame; a prompted frame becomes an ordinary tracked frame."""
        state = self._check_state(inference_state)
        frame_idx = self._check_frame(state, frame_idx)
        obj = self._object(state, obj_id, create=False)
        obj.point_inputs.pop(frame_idx, None)
        obj.mask_inputs.pop(frame_idx, None)
        obj.temp_cond.pop(frame_idx, None)
        obj.temp_non_cond.pop(frame_idx, None)
        out = obj.cond.pop(frame_idx, None)
        if out is not None:
            obj.non_cond[frame_idx] = out
            obj.tracked.pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in o.temp_cond for o in state.objects.values())
        return frame_idx, state.obj_ids, self._consolidated_masks(state, frame_idx, is_cond)

    @torch.inference_mode()
    def remove_object(
        self, inference_state: VideoState, obj_id: Hashable, strict: bool = False, need_output: bool = True
    ):
        """Drop an object. Returns (remaining obj_ids, [(frame_idx, masks)] for frames it had prompts on)."""
        state = self._check_state(inference_state)
        if obj_id not in state.objects:
            if strict:
                raise RuntimeError(
                    f"Cannot remove object id {obj_id} as it doesn't exist. "
                    f"All existing object ids: {state.obj_ids}."
                )
            return state.obj_ids, []
        if len(state.objects) == 1:
            self.reset_state(state)
            return state.obj_ids, []
        obj = state.objects.pop(obj_id)
        prompted = sorted(set(obj.point_inputs) | set(obj.mask_inputs))
        updated = []
        if need_output:
            for f in prompted:
                is_cond = any(f in o.temp_cond for o in state.objects.values())
                updated.append((f, self._consolidated_masks(state, f, is_cond)))
        return state.obj_ids, updated

    # --- propagation ----------------------------------------------------------------------------

    @torch.inference_mode()
    def propagate_in_video_preflight(self, inference_state: VideoState) -> None:
        """Encode the memory of prompted frames and move click outputs into the memory bank."""
        state = self._check_state(inference_state)
        if not state.objects:
            raise RuntimeError(
                "No input points or masks are provided for any object; please add inputs first."
            )
        for obj in state.objects.values():
            for is_cond, temp in ((False, obj.temp_non_cond), (True, obj.temp_cond)):
                for f, out in temp.items():
                    if out.maskmem_features is None:
                        s = self.image_size
                        high = F.interpolate(
                            out.pred_masks.to(state.device), size=(s, s), mode="bilinear", align_corners=False
                        )
                        feats = self._features(state, f)
                        mem, pos = trk.encode_memory(
                            self.model,
                            feats.top,
                            high,
                            out.object_score_logits,
                            is_mask_from_pts=True,
                            binarize_mask_from_pts=self.binarize_mask_from_pts_for_mem_enc,
                        )
                        out.maskmem_features = mem.to(state.storage_device)
                        out.maskmem_pos_enc = self._pos_enc(state, pos)
                    (obj.cond if is_cond else obj.non_cond)[f] = out
                    if self.clear_non_cond_mem_around_input:
                        self._clear_memory_around(obj, f)
                temp.clear()
            if not obj.cond:
                raise RuntimeError(
                    f"No input points or masks are provided for object id {obj.obj_id}; "
                    "please add inputs first."
                )
            for f in obj.cond:
                obj.non_cond.pop(f, None)

    @torch.inference_mode()
    def propagate_in_video(
        self,
        inference_state: VideoState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list, torch.Tensor]]:
        """Track every object from ``start_frame_idx`` (default: the first prompted frame) forward, or
        backward with ``reverse=True``. Yields (frame_idx, obj_ids, masks (num_objects, 1, H, W) logits)."""
        state = self._check_state(inference_state)
        self.propagate_in_video_preflight(state)
        n = state.num_frames
        if start_frame_idx is None:
            start_frame_idx = min(t for obj in state.objects.values() for t in obj.cond)
        start_frame_idx = self._check_frame(state, start_frame_idx)
        if max_frame_num_to_track is None:
            max_frame_num_to_track = n
        if max_frame_num_to_track < 0:
            raise ValueError(f"max_frame_num_to_track must be >= 0, got {max_frame_num_to_track}")
        if reverse:
            end = max(start_frame_idx - max_frame_num_to_track, 0)
            order = range(start_frame_idx, end - 1, -1) if start_frame_idx > 0 else range(0)
        else:
            end = min(start_frame_idx + max_frame_num_to_track, n - 1)
            order = range(start_frame_idx, end + 1)

        objects = list(state.objects.values())
        try:
            for k, frame_idx in enumerate(tqdm(order, desc="propagate in video", disable=not self.progress)):
                if self.prefetch_frames and k + 1 < len(order) and state.features.get(order[k + 1]) is None:
                    # the next frame is read and resized while this one runs (the GPU's time, on a GPU)
                    state.frames.prefetch(order[k + 1])
                yield frame_idx, state.obj_ids, self._propagate_frame(state, objects, frame_idx, reverse)
                if not self.keep_all_outputs:
                    self._trim(objects, frame_idx - (-1 if reverse else 1) * self.keep_window)
        finally:
            # propagation ended or was abandoned (the caller stopped iterating): no read ahead is
            # wanted any more, and the reader thread should not outlive it
            state.frames.close()

    def _propagate_frame(
        self, state: VideoState, objects: list, frame_idx: int, reverse: bool
    ) -> torch.Tensor:
        """One frame of :meth:`propagate_in_video`: every object's mask on ``frame_idx``, its prompted
        output where it has one, else tracked from memory (objects with the same memory plan in one
        batch). Returns masks (num_objects, 1, H, W) logits at video resolution."""
        masks: list[torch.Tensor | None] = [None] * len(objects)
        todo = []
        for i, obj in enumerate(objects):
            if frame_idx in obj.cond:
                masks[i] = obj.cond[frame_idx].pred_masks.to(state.device)
                if self.clear_non_cond_mem_around_input:
                    self._clear_memory_around(obj, frame_idx)
            else:
                todo.append(i)
        for group in self._groups(state, frame_idx, [objects[i] for i in todo], todo, reverse):
            idx = [i for i, _ in group]
            batch = [objects[i] for i in idx]
            out, pred = self._run_frame(
                state,
                frame_idx,
                batch,
                False,
                None,
                None,
                reverse,
                run_mem_encoder=True,
                prev_logits=None,
                plans=[plan for _, plan in group],
            )
            for j, i in enumerate(idx):
                objects[i].non_cond[frame_idx] = out.select(j)
                masks[i] = pred[j : j + 1]
        for obj in objects:
            obj.tracked[frame_idx] = reverse
        return self._video_res(state, torch.cat(masks, dim=0))

    # --- internals ------------------------------------------------------------------------------

    def _groups(self, state, frame_idx, objs, indices, reverse):
        """Objects to track on this frame, grouped by identical memory plans (one batch each)."""
        groups: dict[trk.MemoryPlan, list] = {}
        for i, obj in zip(indices, objs):
            plan = trk.memory_plan(self.model, frame_idx, obj.cond, obj.non_cond, state.num_frames, reverse)
            if self.static_memory:  # a fixed-size bank: objects batch whatever their memories
                key = 0 if self.batch_objects else i
            else:
                key = plan if self.batch_objects else (plan, i)
            groups.setdefault(key, []).append((i, plan))
        return list(groups.values())

    def _run_frame(
        self,
        state: VideoState,
        frame_idx: int,
        objs: list[ObjectTrack],
        is_init_cond: bool,
        points,
        mask,
        reverse: bool,
        run_mem_encoder: bool,
        prev_logits,
        plans=None,
    ) -> tuple[trk.FrameOutput, torch.Tensor]:
        """One tracking step on one frame for a batch of objects. Returns the stored output and the
        low-res logits (B, 1, 4h, 4w) on the compute device."""
        model = self.model
        b = len(objs)
        feats = self._features(state, frame_idx).expand(b)
        if mask is not None and model.cfg.use_mask_input_as_output_without_sam:
            heads = trk.mask_as_output(model, feats, mask)
        else:
            memory = None
            if not is_init_cond:
                if plans is None:
                    plans = [
                        trk.memory_plan(model, frame_idx, o.cond, o.non_cond, state.num_frames, reverse)
                        for o in (objs if self.static_memory else objs[:1])
                    ]
                stores = [(o.cond, o.non_cond) for o in objs]
                if self.static_memory:
                    memory = trk.assemble_memory_static(model, plans, stores, state.num_frames, state.device)
                else:
                    memory = trk.assemble_memory(model, plans[0], stores, state.num_frames, state.device)
            num_pts = 0 if points is None else points[1].shape[1]
            cfg = model.cfg
            multimask = (
                cfg.multimask_output_in_sam
                and (is_init_cond or cfg.multimask_output_for_tracking)
                and cfg.multimask_min_pt_num <= num_pts <= cfg.multimask_max_pt_num
            )
            if (
                self.static_memory
                and memory is not None
                and points is None
                and mask is None
                and prev_logits is None
                and run_mem_encoder
                and cfg.num_maskmem > 0
                and self._use_cuda_graphs()
            ):
                # a tracked frame with the fixed-size bank: its shapes are fixed, so it can be replayed
                return self._graphed_frame(state, self._features(state, frame_idx), b, memory, multimask)
            pix = trk.condition_on_memory(model, feats, is_init_cond, memory)
            mask_inputs = prev_logits if prev_logits is not None else mask
            heads = trk.sam_heads(model, pix, feats.high_res, points, mask_inputs, multimask)
        mem = pos = None
        if run_mem_encoder and model.cfg.num_maskmem > 0:
            mem, pos = trk.encode_memory(
                model,
                feats.top,
                heads.high_res_masks,
                heads.object_score_logits,
                is_mask_from_pts=points is not None,
                binarize_mask_from_pts=self.binarize_mask_from_pts_for_mem_enc,
            )
            pos = self._pos_enc(state, pos)
            mem = mem.to(state.storage_device)
        return self._frame_output(state, heads, mem, pos)

    def _frame_output(
        self, state: VideoState, heads: trk.HeadsOutput, mem, pos
    ) -> tuple[trk.FrameOutput, torch.Tensor]:
        pred = heads.low_res_masks
        if self.fill_hole_area > 0:
            pred = fill_small_regions(pred, self.fill_hole_area, 0.0, foreground=False, value=0.1)
        out = trk.FrameOutput(
            pred_masks=pred.to(state.storage_device),
            obj_ptr=heads.obj_ptr,
            object_score_logits=heads.object_score_logits,
            maskmem_features=mem,
            maskmem_pos_enc=pos if mem is not None else state.maskmem_pos_enc,
        )
        return out, pred

    def _use_cuda_graphs(self) -> bool:
        return self.model.policy.cuda_graphs

    def _graphed_frame(
        self, state: VideoState, feats: trk.FrameFeatures, b: int, memory: tuple, multimask: bool
    ) -> tuple[trk.FrameOutput, torch.Tensor]:
        """A tracked frame with the fixed-size memory bank -- memory attention, heads and memory encoder
        as one pure function of tensors -- replayed from a CUDA graph per shape
        (:class:`~samkit.predictors._graphs.StepGraphs`); the same kernels, so the same results."""
        model = self.model
        mem, mem_pos, n_ptr, valid = memory
        levels = len(feats.high_res)
        binarize = self.binarize_mask_from_pts_for_mem_enc

        def step(top, top_pos, *rest):
            # the frame's features (batch 1) are expanded to the objects here, as on the eager path
            high_res, (bank, bank_pos, bank_valid) = list(rest[:levels]), rest[levels:]
            f = trk.FrameFeatures(high_res, top, top_pos).expand(b)
            top, high_res = f.top, f.high_res
            pix = trk.condition_on_memory(model, f, False, (bank, bank_pos, n_ptr, bank_valid))
            h = trk.sam_heads(model, pix, high_res, None, None, multimask)
            feats_mem, pos_mem = trk.encode_memory(
                model, top, h.high_res_masks, h.object_score_logits, False, binarize_mask_from_pts=binarize
            )
            return (
                h.low_res_masks,
                h.high_res_masks,
                h.ious,
                h.obj_ptr,
                h.object_score_logits,
                feats_mem,
                pos_mem,
            )

        inputs = (feats.top, feats.top_pos, *feats.high_res, mem, mem_pos, valid)
        low, high, ious, ptr, score, feats_mem, pos_mem = step_graphs_for(model).run(
            step,
            inputs,
            key=(b, n_ptr, multimask, binarize, model.training),
            before_record=state.frames.settle,
        )
        heads = trk.HeadsOutput(low, high, ious, ptr, score)
        return self._frame_output(
            state, heads, feats_mem.to(state.storage_device), self._pos_enc(state, pos_mem)
        )

    def _pos_enc(self, state: VideoState, pos: torch.Tensor) -> torch.Tensor:
        """The memory position encoding is the same for every frame and object: keep one copy."""
        if state.maskmem_pos_enc is None:
            state.maskmem_pos_enc = pos[0:1].clone()
        return state.maskmem_pos_enc

    def _features(self, state: VideoState, frame_idx: int) -> trk.FrameFeatures:
        return state.features.get_or_create(
            frame_idx,
            lambda: trk.frame_features(
                self.model, state.frames[frame_idx].to(state.device).float().unsqueeze(0)
            ),
        )

    def _consolidated_masks(self, state: VideoState, frame_idx: int, is_cond: bool) -> torch.Tensor:
        """Every object's current mask on a frame at video resolution; missing objects get NO_OBJ_SCORE."""
        h, w = state.video_height, state.video_width
        masks = torch.full(
            (len(state.objects), 1, h, w), trk.NO_OBJ_SCORE, dtype=torch.float32, device=state.device
        )
        for i, obj in enumerate(state.objects.values()):
            out = obj.output(frame_idx, temp_cond_first=is_cond)
            if out is None or out.pred_masks is None:
                continue
            masks[i : i + 1] = F.interpolate(
                out.pred_masks.to(state.device), size=(h, w), mode="bilinear", align_corners=False
            )
        if self.non_overlap_masks:
            masks = trk.non_overlapping(masks)
        return masks

    def _video_res(self, state: VideoState, masks: torch.Tensor) -> torch.Tensor:
        h, w = state.video_height, state.video_width
        if tuple(masks.shape[-2:]) != (h, w):
            masks = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=False)
        return trk.non_overlapping(masks) if self.non_overlap_masks else masks

    def _apply_non_overlapping_constraints(self, pred_masks: torch.Tensor) -> torch.Tensor:
        """The reference's helper of this name, which Meta's ``tools/vos_inference.py`` calls: at each
        pixel only the highest-scoring object keeps its logit, the others are clamped to at most -10.
        pred_masks: (num_objects, 1, H, W) logits."""
        return trk.non_overlapping(pred_masks)

    def _trim(self, objects: list[ObjectTrack], frame_idx: int) -> None:
        """The memory policy: drop the memory features and logits of a tracked frame that has left the
        window behind the tracking front, unless it lies near one of the object's prompted frames."""
        for obj in objects:
            out = obj.non_cond.get(frame_idx)
            if out is None or out.maskmem_features is None:
                continue
            if any(abs(frame_idx - c) <= self.keep_window for c in obj.cond):
                continue
            out.maskmem_features = None
            out.pred_masks = None

    def _clear_memory_around(self, obj: ObjectTrack, frame_idx: int) -> None:
        r = self.model.cfg.memory_temporal_stride_for_eval * self.model.cfg.num_maskmem
        for t in range(frame_idx - r, frame_idx + r + 1):
            obj.non_cond.pop(t, None)

    @staticmethod
    def _check_state(state) -> VideoState:
        if not isinstance(state, VideoState):
            raise TypeError(
                "expected the state returned by init_state(video); call init_state first"
                if state is None
                else f"expected a VideoState from init_state, got {type(state).__name__}"
            )
        return state

    @staticmethod
    def _check_frame(state: VideoState, frame_idx) -> int:
        if isinstance(frame_idx, bool) or not isinstance(frame_idx, (int, np.integer)):
            raise TypeError(f"frame_idx must be an int, got {type(frame_idx).__name__}")
        if not 0 <= frame_idx < state.num_frames:
            raise IndexError(
                f"frame_idx {frame_idx} out of range for a video of {state.num_frames} frames "
                f"(0..{state.num_frames - 1})"
            )
        return int(frame_idx)

    @staticmethod
    def _object(state: VideoState, obj_id: Hashable, create: bool) -> ObjectTrack:
        try:
            obj = state.objects.get(obj_id)
        except TypeError:
            raise TypeError(
                f"obj_id must be hashable (an int or a string), got {type(obj_id).__name__}"
            ) from None
        if obj is None:
            if not create:
                raise KeyError(f"unknown obj_id {obj_id!r}; known objects: {state.obj_ids}")
            obj = state.objects[obj_id] = ObjectTrack(obj_id)
        return obj
