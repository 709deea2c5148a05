"""The state of one tracking session: the video, its frame cache and feature cache, and per object its
prompts and outputs (the reference keeps the same in a dict; :class:`VideoState` also answers the
reference's common keys)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import torch

from .._lru import LRU
from . import tracking as trk
from .io import FrameCache, VideoSource

__all__ = ["ObjectTrack", "VideoState"]


@dataclass
class ObjectTrack:
    """Prompts and outputs of one object. Output dicts map frame index -> FrameOutput (batch 1)."""

    obj_id: Hashable
    point_inputs: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    mask_inputs: dict[int, torch.Tensor] = field(default_factory=dict)
    cond: dict[int, trk.FrameOutput] = field(default_factory=dict)
    non_cond: dict[int, trk.FrameOutput] = field(default_factory=dict)
    # outputs of clicks not yet consolidated into memory (done when propagation starts)
    temp_cond: dict[int, trk.FrameOutput] = field(default_factory=dict)
    temp_non_cond: dict[int, trk.FrameOutput] = field(default_factory=dict)
    # frame index -> whether it was tracked in reverse
    tracked: dict[int, bool] = field(default_factory=dict)

    def output(self, frame_idx: int, temp_cond_first: bool | None = None) -> trk.FrameOutput | None:
        """The most recent output on a frame: temporary (click) outputs first, then stored ones."""
        if temp_cond_first is not None:
            out = (self.temp_cond if temp_cond_first else self.temp_non_cond).get(frame_idx)
            if out is not None:
                return out
        return self.cond.get(frame_idx) or self.non_cond.get(frame_idx)

    def clear_outputs(self) -> None:
        for d in (
            self.point_inputs,
            self.mask_inputs,
            self.cond,
            self.non_cond,
            self.temp_cond,
            self.temp_non_cond,
            self.tracked,
        ):
            d.clear()


@dataclass
class VideoState:
    """One tracking session on one video."""

    video: VideoSource
    frames: FrameCache
    num_frames: int
    video_height: int
    video_width: int
    device: torch.device
    storage_device: torch.device
    offload_video_to_cpu: bool = False
    offload_state_to_cpu: bool = False
    objects: dict[Hashable, ObjectTrack] = field(default_factory=dict)
    features: LRU = field(default_factory=lambda: LRU(4))  # frame index -> trk.FrameFeatures
    maskmem_pos_enc: torch.Tensor | None = None

    @property
    def obj_ids(self) -> list:
        return list(self.objects)

    _COMPAT_KEYS = (
        "num_frames",
        "video_height",
        "video_width",
        "device",
        "storage_device",
        "obj_ids",
        "offload_video_to_cpu",
        "offload_state_to_cpu",
    )

    def __getitem__(self, key: str) -> Any:
        """Read-only access with the reference's dict keys, for code written against it."""
        if key in self._COMPAT_KEYS:
            return getattr(self, key)
        if key == "images":
            return self.frames
        raise KeyError(key)

    def state_nbytes(self) -> int:
        """Bytes held by per-object outputs (for the memory policy's benchmarks and tests)."""
        total = 0
        for obj in self.objects.values():
            for d in (obj.cond, obj.non_cond, obj.temp_cond, obj.temp_non_cond):
                for o in d.values():
                    for t in (o.pred_masks, o.maskmem_features, o.obj_ptr, o.object_score_logits):
                        if t is not None:
                            total += t.numel() * t.element_size()
        return total
