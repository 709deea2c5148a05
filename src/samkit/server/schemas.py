"""Request and response models of the JSON API."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Finite = Annotated[float, Field(allow_inf_nan=False)]
Point = Annotated[list[Finite], Field(min_length=2, max_length=2)]


class ImageInfo(BaseModel):
    image_id: str = Field(description="SHA-256 of the uploaded bytes")
    width: int
    height: int
    cached: bool = Field(description="the embedding was already computed")


class RLE(BaseModel):
    size: list[int]
    counts: str


class SegmentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_id: str | None = Field(None, description="from POST /v1/images")
    image: str | None = Field(None, description="base64 image bytes, instead of image_id")
    points: list[Point] = Field(default_factory=list, description="[[x, y], ...] in image pixels")
    labels: list[int] = Field(default_factory=list, description="1 object, 0 background (default 1)")
    box: Annotated[list[Finite], Field(min_length=4, max_length=4)] | None = None
    multimask: bool = True
    mask_from: str | None = Field(None, description="a previous mask_id to refine")
    output: Literal["rle", "png"] = "rle"
    head: bool = Field(False, description="the server's prompt-free head: its classes, no prompt")
    text: str | None = Field(None, description="segment what these words name: phrases separated by '.'")
    box_threshold: float = Field(0.35, ge=0, le=1, description="with text: the detector's box score")
    text_threshold: float = Field(0.25, ge=0, le=1, description="with text: Grounding DINO's phrase score")
    classes: list[str] | None = Field(None, description="with head: only these classes (default all)")


class MaskOut(BaseModel):
    mask_id: str
    score: float
    area: int
    bbox: list[int] = Field(description="COCO [x, y, width, height]")
    rle: RLE
    png: str | None = Field(None, description="base64 PNG, with output='png'")
    label: str | None = Field(None, description="the class of a head's mask, the phrase of a text prompt's")
    box: list[float] | None = Field(None, description="with text: the detector's box x0, y0, x1, y1")


class SegmentResponse(BaseModel):
    image_id: str
    width: int
    height: int
    masks: list[MaskOut]


class AutomaticRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_id: str
    points_per_side: int = Field(32, ge=1, le=128)
    points_per_batch: int = Field(64, ge=1, le=1024)
    pred_iou_thresh: float = Field(0.8, ge=0, le=1)
    stability_score_thresh: float = Field(0.95, ge=0, le=1)
    box_nms_thresh: float = Field(0.7, ge=0, le=1)
    crop_n_layers: int = Field(0, ge=0, le=3)
    min_mask_region_area: int = Field(0, ge=0)


class Health(BaseModel):
    status: str
    model: str
    device: str
    policy: dict = Field(description="the model's execution policy (samkit.policy.Policy.as_dict())")
    embeddings_cached: int
    embedding_cache_bytes: int
    masks_cached: int
    queue: int
    video_sessions: int
    stream_sessions: int = Field(0, description="live tracking sessions open on /v1/stream")
    head: dict | None = Field(None, description="the prompt-free head: kind and classes (null without one)")
    client_decoding: bool = Field(False, description="the page may decode clicks itself (GET /v1/decoder)")


# --- video sessions ---------------------------------------------------------------------------


class PromptRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    frame_idx: int = Field(ge=0)
    obj_id: int | str | None = Field(None, description="the object (not with text: new objects get new ids)")
    text: str | None = Field(None, description="add every object these words name on this frame")
    box_threshold: float = Field(0.35, ge=0, le=1)
    text_threshold: float = Field(0.25, ge=0, le=1)
    points: list[Point] = Field(default_factory=list)
    labels: list[int] = Field(default_factory=list, description="1 object, 0 background (default 1)")
    box: list[Finite] | None = Field(None, min_length=4, max_length=4)
    clear_old_points: bool = True


class PropagateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_frame_idx: int | None = Field(None, ge=0)
    max_frame_num_to_track: int | None = Field(None, ge=0)
    reverse: bool = False
