"""CVAT's AI tools: the request and response shapes of CVAT's serverless functions, served by samkit.

``POST /cvat/interactor`` (an interactor, as CVAT's HRNet or IOG functions)
    request ``{"image": base64, "pos_points": [[x, y], ...], "neg_points": [[x, y], ...],
    "obj_bbox": [[x0, y0], [x1, y1]] (optional), "threshold": ... (accepted, unused)}`` in the
    image's pixels -> ``{"mask": H x W nested lists of true/false}``, the best mask of SAM 2 for those
    clicks (and box). The embedding is cached under the image's SHA-256 like every upload, so the
    clicks after the first on one image cost only the decoder.

``POST /cvat/tracker`` (a tracker, as CVAT's SiamMask or TransT functions)
    request ``{"image": base64, "shapes": [[xtl, ytl, xbr, ybr] or flat polygon points, ...],
    "states": [null or a state this endpoint returned, ...]}`` -> ``{"shapes": [[xtl, ytl, xbr,
    ybr], ...], "states": [...]}``. A shape with a null state starts a track on this image from its
    bounding box (a :class:`samkit.StreamTracker` on the server); a shape with a state is tracked on
    this image, and its new shape is the box around SAM 2's mask (the previous box while the object
    is not seen). States are small JSON objects naming the track; tracks unused for the longest are
    dropped beyond ``TRACKS_KEPT``.

Errors are samkit's JSON errors with a 4xx status (CVAT shows the message).
"""

from __future__ import annotations

import threading
import uuid
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ..._lru import LRU
from ...stream import StreamError, StreamTracker
from ..errors import ApiError
from ._prompt import best_mask, check_bounds, request_prompt
from .images import decode_base64, ensure_embedding, image_from_bytes

router = APIRouter()

TRACKS_KEPT = 64


class InteractorRequest(BaseModel):
    image: str
    pos_points: list[list[float]] = Field(default_factory=list, max_length=64)
    neg_points: list[list[float]] = Field(default_factory=list, max_length=64)
    obj_bbox: list[list[float]] | None = None
    threshold: float | None = None


class TrackerRequest(BaseModel):
    image: str
    shapes: list[list[float]] = Field(max_length=16)  # each shape tracks on its own: one encode each
    states: list[Any] | None = None


@router.post("/cvat/interactor", tags=["integrations"])
def interactor(request: Request, body: InteractorRequest) -> dict:
    """CVAT's interactor: clicks (and a box) in, the best mask out as nested true/false lists."""
    engine = request.app.state.engine
    if not body.pos_points and body.obj_bbox is None:
        raise ApiError(422, "invalid_request", "give at least one positive point (pos_points) or obj_bbox")
    box = None
    if body.obj_bbox is not None:
        if len(body.obj_bbox) != 2 or any(len(p) != 2 for p in body.obj_bbox):
            raise ApiError(422, "invalid_request", "obj_bbox is [[x0, y0], [x1, y1]]")
        (x0, y0), (x1, y1) = body.obj_bbox
        box = [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]
    points = list(body.pos_points) + list(body.neg_points)
    labels = [1] * len(body.pos_points) + [0] * len(body.neg_points)
    prompt = request_prompt(points, labels, box)
    data = decode_base64(body.image, request.app.state.config.max_upload_bytes)
    image_id, image = image_from_bytes(request, data)
    emb = ensure_embedding(request, image_id, image)
    h, w = emb.orig_hw
    check_bounds(prompt, w, h)
    best, _ = best_mask(engine, image_id, emb, prompt)
    return {"mask": best.tolist()}


class _Track:
    def __init__(self, tracker: StreamTracker, box: list[float]) -> None:
        self.tracker, self.box, self.lock = tracker, box, threading.Lock()


def new_track_store() -> LRU:
    """The tracks of one app (made with the app, so requests never race to create it)."""
    return LRU(TRACKS_KEPT)


def _tracks(request: Request) -> LRU:
    return request.app.state.cvat_tracks


def _bounding_box(shape: list[float]) -> list[float]:
    if len(shape) < 4 or len(shape) % 2:
        raise ApiError(
            422, "invalid_request", f"a shape is [xtl, ytl, xbr, ybr] or flat polygon points, got {shape}"
        )
    xs, ys = shape[0::2], shape[1::2]
    box = [min(xs), min(ys), max(xs), max(ys)]
    if box[2] <= box[0] or box[3] <= box[1]:
        raise ApiError(422, "invalid_request", f"the shape {shape} has no area")
    return box


@router.post("/cvat/tracker", tags=["integrations"])
def tracker(request: Request, body: TrackerRequest) -> dict:
    """CVAT's tracker: start tracks from shapes (null states), or move them to this image."""
    from ...transforms import ImageDecodeError, decode_image

    engine = request.app.state.engine
    states = body.states if body.states is not None else [None] * len(body.shapes)
    if len(states) != len(body.shapes):
        raise ApiError(422, "invalid_request", f"{len(body.shapes)} shapes but {len(states)} states")
    tracks = _tracks(request)
    work = []
    for shape, state in zip(body.shapes, states):
        if state is None:
            work.append((None, _bounding_box(shape)))
            continue
        track_id = state.get("samkit_track") if isinstance(state, dict) else None
        track = None if not isinstance(track_id, str) else tracks.get(track_id)
        if track is None:
            raise ApiError(
                404, "unknown_track", "this tracking state is unknown or expired: start the track again"
            )
        work.append((track_id, track))
    data = decode_base64(body.image, request.app.state.config.max_upload_bytes)
    try:
        image = decode_image(data, request.app.state.config.max_pixels)
    except ImageDecodeError as e:
        raise ApiError(413 if e.kind == "too_large" else 400, "bad_image", str(e)) from None
    out_shapes, out_states = [], []
    for track_id, item in work:
        if track_id is None:  # a new track from this shape's box
            session = StreamTracker(engine.model)
            try:
                with engine.model_lock:
                    session.track(image, {1: {"box": item}})
            except StreamError as e:
                raise ApiError(422, "invalid_request", str(e)) from None
            track_id = uuid.uuid4().hex
            tracks.put(track_id, _Track(session, item))
            out_shapes.append(item)
        else:
            try:
                with item.lock, engine.model_lock:
                    mask = item.tracker.track(image).get(1)
            except StreamError as e:
                raise ApiError(422, "invalid_request", str(e)) from None
            if mask is not None and mask.any():
                ys, xs = np.nonzero(mask)
                item.box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
            out_shapes.append(item.box)
        out_states.append({"samkit_track": track_id})
    return {"shapes": out_shapes, "states": out_states}
