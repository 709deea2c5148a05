"""What a training step consumes: :class:`Sample` (one image or video clip with its objects' masks,
as datasets return it) and :class:`Batch` (samples collated frame-major, the layout the training
forward tracks in)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Sample:
    """One training sample: T frames (T = 1 for an image) and O objects.

    frames: (T, 3, H, W) float32, normalized with the ImageNet mean/std (after the transforms);
    masks: (T, O, H, W) bool; object_ids: the dataset's id of each of the O objects;
    name: the image or video it came from (for messages and logs).
    """

    frames: torch.Tensor
    masks: torch.Tensor
    object_ids: list[int]
    name: str = ""

    def __post_init__(self) -> None:
        if self.frames.dim() != 4 or self.frames.shape[1] != 3:
            raise ValueError(
                f"{self.name or 'sample'}: frames must be (T, 3, H, W), got {tuple(self.frames.shape)}"
            )
        t, _, h, w = self.frames.shape
        if self.masks.dim() != 4 or self.masks.shape[0] != t or tuple(self.masks.shape[2:]) != (h, w):
            raise ValueError(
                f"{self.name or 'sample'}: masks must be (T={t}, O, {h}, {w}), got {tuple(self.masks.shape)}"
            )
        if self.masks.shape[1] != len(self.object_ids):
            raise ValueError(
                f"{self.name or 'sample'}: {self.masks.shape[1]} masks per frame but "
                f"{len(self.object_ids)} object ids"
            )
        if self.masks.shape[1] == 0:
            raise ValueError(f"{self.name or 'sample'}: no objects")

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


@dataclass
class Batch:
    """B samples with the same number of frames T, collated frame-major.

    img_batch: (T, B, 3, S, S); masks: (T, O, S, S) bool where O counts the objects of all samples;
    obj_to_frame_idx: (T, O, 2) int32 holding (frame, sample) of each object's image. The attribute
    names and properties are those of the reference's ``BatchedVideoDatapoint``.
    """

    img_batch: torch.Tensor
    masks: torch.Tensor
    obj_to_frame_idx: torch.Tensor
    names: list[str] = field(default_factory=list)

    @property
    def num_frames(self) -> int:
        return int(self.img_batch.shape[0])

    @property
    def num_videos(self) -> int:
        return int(self.img_batch.shape[1])

    @property
    def num_objects(self) -> int:
        return int(self.masks.shape[1])

    @property
    def flat_img_batch(self) -> torch.Tensor:
        """(B*T, 3, S, S), sample-major."""
        return self.img_batch.transpose(0, 1).flatten(0, 1)

    @property
    def flat_obj_to_img_idx(self) -> torch.Tensor:
        """(T, O): each object's row in :attr:`flat_img_batch`."""
        frame_idx, video_idx = self.obj_to_frame_idx.unbind(dim=-1)
        return video_idx * self.num_frames + frame_idx

    def to(self, device: torch.device | str, non_blocking: bool = False) -> Batch:
        return Batch(
            self.img_batch.to(device, non_blocking=non_blocking),
            self.masks.to(device, non_blocking=non_blocking),
            self.obj_to_frame_idx.to(device, non_blocking=non_blocking),
            list(self.names),
        )

    def pin_memory(self) -> Batch:
        return Batch(
            self.img_batch.pin_memory(),
            self.masks.pin_memory(),
            self.obj_to_frame_idx.pin_memory(),
            self.names,
        )


def collate(samples: list[Sample]) -> Batch:
    """Samples -> :class:`Batch` (all with the same frame count and size)."""
    if not samples:
        raise ValueError("cannot collate an empty list of samples")
    t = samples[0].num_frames
    size = tuple(samples[0].frames.shape[-2:])
    for s in samples:
        if s.num_frames != t or tuple(s.frames.shape[-2:]) != size:
            raise ValueError(
                f"samples of one batch need the same frame count and size: {s.name!r} has "
                f"{s.num_frames} frames of {tuple(s.frames.shape[-2:])}, the first has {t} of {size}"
            )
    img_batch = torch.stack([s.frames for s in samples], dim=1)
    masks = torch.cat([s.masks.bool() for s in samples], dim=1)
    idx = []
    for b, s in enumerate(samples):
        o = s.masks.shape[1]
        frames = torch.arange(t, dtype=torch.int32)[:, None].expand(t, o)
        videos = torch.full((t, o), b, dtype=torch.int32)
        idx.append(torch.stack([frames, videos], dim=-1))
    return Batch(img_batch, masks, torch.cat(idx, dim=1), [s.name for s in samples])
