"""X-AnyLabeling's remote-server API (``--integrations x-anylabeling``): X-AnyLabeling's "Remote Server"
model talks to samkit as it talks to X-AnyLabeling-Server.

- ``GET /health``; ``GET /v1/models`` and ``/v1/models/{id}/info``: two models over the one loaded,
  ``<model>`` (clicks and boxes on an image) and ``<model>-video`` (X-AnyLabeling's video mode);
- ``POST /v1/predict`` ``{"model", "image": data URI or base64, "params": {"marks": [{"type": "point",
  "data": [x, y], "label": 1 or 0} | {"type": "rectangle", "data": [x0, y0, x1, y1]}, ...],
  "epsilon_factor", "show_masks", "show_boxes", "multimask_output"}}`` -> ``{"success": true, "data":
  {"shapes": [{"label", "shape_type": "polygon", "points", "score", ...}], "description": ""}}``;
- video: ``POST /v1/video/init`` ``{"model", "frames": [data URIs], "start_frame_index"}`` ->
  ``session_id``; ``POST /v1/video/prompt`` ``{"session_id", "frame_index", "points" (in [0, 1] of the
  frame, as X-AnyLabeling sends them), "point_labels", "obj_id"}`` -> the frame's shapes;
  ``POST /v1/video/propagate/stream`` (server-sent events: ``started``, ``progress`` per frame,
  ``completed`` with every frame's shapes) and ``/v1/video/propagate`` (the same results in one
  answer); ``POST /v1/video/cleanup/{session_id}``.

Masks become polygons (:func:`samkit.polygons.mask_to_polygons`). The API key may come as X-AnyLabeling
sends it (a ``Token`` header) or as elsewhere. Errors use the tool's shape, ``{"success": false,
"error": {"code", "message"}}``, with a 4xx status. Images go through the server's embedding cache.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from fastapi import APIRouter, Body, Request
from fastapi.responses import JSONResponse, StreamingResponse
from PIL import Image

from ...polygons import mask_to_polygons
from ...video.io import FRAME_EXTENSIONS, open_video
from ..config import bearer_token, key_ok
from ..errors import ApiError
from ..sessions import VideoSession
from ._prompt import best_mask, check_bounds, request_prompt
from .images import decode_base64, decode_image, ensure_embedding, image_from_bytes
from .videos import _predictor

router = APIRouter(tags=["integrations"])
health_router = APIRouter(include_in_schema=False)

MAX_MARKS = 64
MAX_FRAMES = 2000
LABEL = "AUTOLABEL_OBJECT"
# what X-AnyLabeling shows for a SAM model: its click, box and polygon-fineness widgets
IMAGE_WIDGETS = [
    {"name": n, "value": None}
    for n in (
        "button_add_point",
        "button_remove_point",
        "button_add_rect",
        "button_clear",
        "button_finish_object",
    )
] + [{"name": "mask_fineness_slider", "value": 10}, {"name": "mask_fineness_value_label", "value": None}]
VIDEO_WIDGETS = [
    {"name": n, "value": None}
    for n in ("button_add_point", "button_remove_point", "button_clear", "button_finish_object")
] + [{"name": "mask_fineness_slider", "value": 10}, {"name": "mask_fineness_value_label", "value": None}]


class ToolError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def fail(e: ToolError | ApiError) -> JSONResponse:
    return JSONResponse(
        {"success": False, "error": {"code": e.code.upper(), "message": e.message}}, status_code=e.status
    )


def ok(data) -> dict:
    return {"success": True, "data": data}


def refused(request: Request) -> JSONResponse | None:
    """The tool's 401 unless the request carries the server's key (X-AnyLabeling's Token header, or a
    Bearer/basic one as elsewhere); None when it does."""
    token = request.headers.get("token") or bearer_token(request.headers.get("authorization"))
    if key_ok(request.app.state.config, token):
        return None
    return fail(ToolError(401, "UNAUTHORIZED", "Invalid or missing API Key (send it in the Token header)"))


def answer(request: Request, run) -> JSONResponse | dict:
    """``run()``'s data as the tool's success answer; its errors (and the server's) in the tool's shape."""
    if (no := refused(request)) is not None:
        return no
    try:
        return ok(run())
    except (ToolError, ApiError) as e:
        return fail(e)


def _models(request: Request) -> dict:
    cfg = request.app.state.engine.model.cfg
    name = cfg.name
    common = {"params": {"model": name, "image_size": cfg.image_size}, "capabilities": {}}
    return {
        name: {
            "display_name": f"{name} (samkit)",
            "widgets": IMAGE_WIDGETS,
            "batch_processing_mode": "default",
            **common,
        },
        f"{name}-video": {
            "display_name": f"{name} video tracking (samkit)",
            "widgets": VIDEO_WIDGETS,
            "batch_processing_mode": "video",
            **common,
        },
    }


def _model(request: Request, body: dict) -> str:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise ToolError(422, "MISSING_MODEL", "Model ID is required")
    if model not in _models(request):
        raise ToolError(
            404,
            "MODEL_NOT_FOUND",
            f"Model {model!r} not loaded (this server has {', '.join(_models(request))})",
        )
    return model


def _image_bytes(request: Request, text, what: str = "image") -> bytes:
    if not isinstance(text, str) or not text:
        raise ToolError(422, "INVALID_IMAGE", f"{what} must be a base64 string or a data: URI")
    if text.startswith("data:"):
        head, _, text = text.partition(",")
        if ";base64" not in head:
            raise ToolError(422, "INVALID_IMAGE", f"{what}: only base64 data: URIs are taken")
    try:
        return decode_base64(text, request.app.state.config.max_upload_bytes)
    except ApiError as e:  # (the server's size and base64 checks, in the tool's terms)
        if e.status == 413:
            raise ToolError(413, "IMAGE_TOO_LARGE", f"{what}: {e.message}") from None
        raise ToolError(422, "INVALID_IMAGE", f"{what} is not valid base64") from None


def _params(body: dict) -> dict:
    params = body.get("params") or {}
    if not isinstance(params, dict):
        raise ToolError(422, "INVALID_PARAMS", "params must be an object")
    eps = params.get("epsilon_factor", 0.001)
    if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not 0 <= eps <= 1:
        raise ToolError(422, "INVALID_PARAMS", f"epsilon_factor must be a number in [0, 1], got {eps!r}")
    return params


def shapes_of(mask: np.ndarray, params: dict, score: float | None = None, group_id=None) -> list[dict]:
    """One object's mask as X-AnyLabeling shapes: its polygons (``show_masks``, default) and/or the
    rectangle around it (``show_boxes``)."""
    base = {
        "label": LABEL,
        "score": None if score is None else min(max(float(score), 0.0), 1.0),
        "attributes": {},
        "description": None,
        "difficult": False,
        "direction": 0,
        "flags": None,
        "group_id": group_id if isinstance(group_id, int) and group_id > 0 else None,
        "kie_linking": [],
    }
    out = []
    if params.get("show_masks", True):
        for poly in mask_to_polygons(mask, float(params.get("epsilon_factor", 0.001))):
            out.append({**base, "shape_type": "polygon", "points": poly + poly[:1]})
    if params.get("show_boxes", False) and mask.any():
        ys, xs = np.nonzero(mask)
        x0, y0, x1, y1 = float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max())
        out.append({**base, "shape_type": "rectangle", "points": [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]})
    return out


def _marks(params: dict) -> tuple[list, list, list]:
    """X-AnyLabeling's marks -> (points, labels, boxes)."""
    marks = params.get("marks") or []
    if not isinstance(marks, list) or len(marks) > MAX_MARKS:
        raise ToolError(422, "INVALID_MARKS", f"marks must be a list of at most {MAX_MARKS} marks")
    points, labels, boxes = [], [], []
    for m in marks:
        kind = m.get("type") if isinstance(m, dict) else None
        data = m.get("data") if isinstance(m, dict) else None
        if kind == "point" and isinstance(data, list) and len(data) == 2:
            points.append(data)
            labels.append(m.get("label", 1))
        elif kind == "rectangle" and isinstance(data, list) and len(data) == 4:
            boxes.append(data)
        else:
            raise ToolError(
                422,
                "INVALID_MARKS",
                f"a mark is {{'type': 'point', 'data': [x, y], 'label': 1|0}} or {{'type': 'rectangle', 'data': [x0, y0, x1, y1]}}, got {m!r}",
            )
    return points, labels, boxes


@health_router.get("/health")
def health(request: Request) -> dict:
    """X-AnyLabeling-Server's health answer (no key needed)."""
    return {
        "status": "healthy",
        "models_loaded": len(_models(request)),
        "timestamp": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
    }


@router.get("/v1/models")
def models(request: Request):
    return answer(request, lambda: _models(request))


@router.get("/v1/models/{model_id}/info")
def model_info(request: Request, model_id: str):
    def run():
        info = _models(request).get(model_id)
        if info is None:
            raise ToolError(404, "MODEL_NOT_FOUND", f"Model {model_id!r} not loaded")
        return {"model_id": model_id, **info}

    return answer(request, run)


@router.post("/v1/predict")
def predict(request: Request, body: dict = Body(...)):
    """Clicks and boxes (X-AnyLabeling's marks) on one image -> polygons. Each box is an object, with
    every click; with no box, the clicks are one object."""

    def run():
        model = _model(request, body)
        params = _params(body)
        points, labels, boxes = _marks(params)
        data = _image_bytes(request, body.get("image"))
        if model.endswith("-video") or (not points and not boxes):
            return {"shapes": [], "description": "", "replace": False}
        image_id, image = image_from_bytes(request, data)
        emb = ensure_embedding(request, image_id, image)
        h, w = emb.orig_hw
        engine = request.app.state.engine
        multimask = bool(params.get("multimask_output", False))
        shapes = []
        for box in boxes or [None]:
            prompt = check_bounds(request_prompt(points, labels, box), w, h)
            mask, score = best_mask(engine, image_id, emb, prompt, multimask)
            shapes += shapes_of(mask, params, score)
        return {"shapes": shapes, "description": "", "replace": False}

    return answer(request, run)


# --- video ------------------------------------------------------------------------------------------


def _session(request: Request, body: dict) -> VideoSession:
    sid = body.get("session_id")
    if not isinstance(sid, str) or not sid:
        raise ToolError(422, "MISSING_SESSION", "Session ID is required")
    return request.app.state.sessions.get(sid)  # ApiError 404 unknown_video


@router.post("/v1/video/init")
def video_init(request: Request, body: dict = Body(...)):
    """A tracking session over the frames (data URIs, as X-AnyLabeling packs an image folder)."""

    def run():
        _model(request, body)
        frames_in = body.get("frames")
        if not isinstance(frames_in, list) or not frames_in:
            raise ToolError(422, "MISSING_FRAMES", "Frames are required")
        if len(frames_in) > MAX_FRAMES:
            raise ToolError(
                413, "TOO_MANY_FRAMES", f"at most {MAX_FRAMES} frames per session, got {len(frames_in)}"
            )
        start = body.get("start_frame_index", 0)
        if not _integer(start) or start < 0:
            raise ToolError(
                422, "INVALID_REQUEST", f"start_frame_index must be an integer >= 0, got {start!r}"
            )
        config = request.app.state.config
        folder = Path(tempfile.mkdtemp(prefix="samkit-xal-"))
        try:
            # each frame is checked once, then kept on disk: the session reads frames when it needs
            # them (a few in memory, as for an uploaded video), not all of them at once
            size, total = None, 0
            for i, f in enumerate(frames_in):
                data = _image_bytes(request, f, f"frame {i}")
                total += len(data)
                if total > config.max_upload_bytes:
                    raise ToolError(
                        413,
                        "UPLOAD_TOO_LARGE",
                        f"the frames are over the limit of {config.max_upload_bytes} bytes",
                    )
                try:
                    frame = decode_image(data, config.max_pixels)
                except ApiError as e:
                    raise ToolError(e.status, "INVALID_FRAME", f"frame {i}: {e.message}") from None
                if size is not None and frame.shape != size:
                    raise ToolError(
                        422,
                        "INVALID_FRAME",
                        f"frame {i} is {frame.shape[1]}x{frame.shape[0]}, frame 0 {size[1]}x{size[0]}: "
                        "a video's frames share one size",
                    )
                size = frame.shape
                # the frame's own bytes (the session decodes them as it did here), under the suffix of
                # their format; one a folder of frames does not list is stored as PNG
                fmt = Image.open(io.BytesIO(data)).format or ""
                suffix = {"JPEG": ".jpg"}.get(fmt, "." + fmt.lower())
                if suffix in FRAME_EXTENSIONS:
                    (folder / f"{i:06d}{suffix}").write_bytes(data)
                else:
                    Image.fromarray(frame).save(folder / f"{i:06d}.png", compress_level=1)
            state = _predictor(request).init_state(open_video(folder))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        s = VideoSession(uuid.uuid4().hex, folder, state)
        s.meta["start_frame_index"] = start  # X-AnyLabeling counts frames from here
        request.app.state.sessions.add(s)
        return {"session_id": s.video_id, "num_frames": state.num_frames, "start_frame_index": start}

    return answer(request, run)


def _frame_shapes(ids, logits, params: dict) -> list[dict]:
    masks = (logits[:, 0] > 0).cpu().numpy()
    out = []
    for obj_id, m in zip(ids, masks):
        out += shapes_of(m, params, None, obj_id)
    return out


@router.post("/v1/video/prompt")
def video_prompt(request: Request, body: dict = Body(...)):
    """Clicks for one object on one frame (points in [0, 1] of the frame) -> that frame's shapes."""

    def run():
        _model(request, body)
        s = _session(request, body)
        params = _params(body)
        if body.get("text_prompt"):
            raise ToolError(422, "UNSUPPORTED_PROMPT", "text prompts are not taken here: give points")
        points, labels = body.get("points"), body.get("point_labels")
        if not isinstance(points, list) or not points:
            raise ToolError(422, "MISSING_PROMPT", "points are required")
        if not isinstance(labels, list) or len(labels) != len(points):
            raise ToolError(422, "INVALID_PROMPT", f"{len(points)} points but {labels!r} point_labels")
        if len(points) > MAX_MARKS:
            raise ToolError(422, "INVALID_PROMPT", f"at most {MAX_MARKS} points")
        st = s.state
        numbers = all(isinstance(p, list) and len(p) == 2 and all(map(_number, p)) for p in points)
        rel = np.asarray(points, float) if numbers else None
        if rel is None or not np.isfinite(rel).all() or (rel < 0).any() or (rel > 1).any():
            raise ToolError(
                422, "INVALID_PROMPT", "points are [x, y] in [0, 1] of the frame, as X-AnyLabeling sends them"
            )
        frame = body.get("frame_index", 0)
        start = s.meta.get("start_frame_index", 0)
        if not _integer(frame) or not start <= frame < start + st.num_frames:
            raise ToolError(
                422,
                "INVALID_REQUEST",
                f"frame_index {frame!r} is not one of the session's frames ({start}..{start + st.num_frames - 1})",
            )
        obj_id = body.get("obj_id", 1)
        if not _integer(obj_id):
            raise ToolError(422, "INVALID_REQUEST", f"obj_id must be an integer, got {obj_id!r}")
        xy = np.minimum(
            rel * [st.video_width, st.video_height], [st.video_width - 1e-3, st.video_height - 1e-3]
        )
        prompt = check_bounds(request_prompt(xy.tolist(), labels, None), st.video_width, st.video_height)
        engine = request.app.state.engine
        with s.lock, engine.model_lock:
            _, ids, logits = _predictor(request).add_new_points_or_box(
                st, frame - start, obj_id, points=prompt.point_coords, labels=prompt.point_labels
            )
        s.meta["params"] = params  # the shapes of propagation follow the prompt's settings
        shapes = _frame_shapes(ids, logits, params)
        return {"frame_index": frame, "masks": shapes, "num_objects": len(ids)}

    return answer(request, run)


def _propagation(request: Request, body: dict):
    """Checks, then a generator of X-AnyLabeling's events (``started``, ``progress``, ``completed``)."""
    _model(request, body)
    s = _session(request, body)
    if not s.state.objects:
        raise ToolError(422, "NO_PROMPT", "No point prompt set for session")
    start = s.meta.get("start_frame_index", 0)
    first, last = body.get("start_frame"), body.get("end_frame")
    for name, v in (("start_frame", first), ("end_frame", last)):
        if v is not None and (not _integer(v) or not start <= v < start + s.state.num_frames):
            raise ToolError(422, "INVALID_REQUEST", f"{name} {v!r} is not one of the session's frames")
    first_rel = None if first is None else first - start
    last_rel = None if last is None else last - start
    params = s.meta.get("params", {})
    pred = _predictor(request)
    engine = request.app.state.engine

    def events():
        yield {"type": "started", "total_frames": s.state.num_frames, "start_frame_index": start}
        results = {}
        # forward from start_frame (or the first prompted frame), up to end_frame
        gen = pred.propagate_in_video(s.state, start_frame_idx=first_rel)
        done = 0
        try:
            while True:
                with engine.model_lock:  # one frame at a time, so other requests interleave
                    item = next(gen, None)
                if item is None or (last_rel is not None and item[0] > last_rel):
                    break
                f, ids, logits = item
                done += 1
                s.last_used = time.monotonic()
                results[str(f + start)] = {"masks": _frame_shapes(ids, logits, params)}
                yield {
                    "type": "progress",
                    "current_frame": f + start,
                    "total_frames": s.state.num_frames,
                    "progress": done / s.state.num_frames,
                }
        finally:
            gen.close()
        yield {"type": "completed", "results": results}

    return s, events


@router.post("/v1/video/propagate/stream")
def video_propagate_stream(request: Request, body: dict = Body(...)):
    """Track every object through the session, as server-sent events (what X-AnyLabeling reads)."""
    if (no := refused(request)) is not None:
        return no
    try:
        s, events = _propagation(request, body)
    except (ToolError, ApiError) as e:
        return fail(e)

    async def sse():
        from starlette.concurrency import run_in_threadpool

        # the session's lock is taken here, where the finally below is sure to release it (a stream
        # the client drops before it starts never runs this generator at all)
        if not await run_in_threadpool(s.lock.acquire, True, 30):
            busy = {"type": "error", "message": "this session is being tracked by another request"}
            yield f"data: {json.dumps(busy)}\n\n"
            return
        gen = events()
        try:
            while True:
                event = await run_in_threadpool(next, gen, None)
                if event is None:
                    break
                yield f"data: {json.dumps(event)}\n\n"
        except Exception as e:  # the stream has started: report in-band, as X-AnyLabeling reads it
            yield f"data: {json.dumps({'type': 'error', 'message': str(e)})}\n\n"
        finally:
            gen.close()
            s.lock.release()

    return StreamingResponse(
        sse(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/v1/video/propagate")
def video_propagate(request: Request, body: dict = Body(...)):
    """The same tracking, answered at once: ``{"status": "completed", "results": {frame: {"masks"}}}``."""

    def run():
        s, events = _propagation(request, body)
        with s.lock:
            results = {}
            for event in events():
                if event["type"] == "completed":
                    results = event["results"]
        return {"status": "completed", "results": results}

    return answer(request, run)


@router.post("/v1/video/cleanup/{session_id}")
def video_cleanup(request: Request, session_id: str):
    def run():
        if not request.app.state.sessions.remove(session_id):
            raise ToolError(404, "SESSION_NOT_FOUND", f"Session {session_id} not found")
        return {"message": f"Session {session_id} cleaned up"}

    return answer(request, run)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _integer(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
