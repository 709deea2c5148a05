"""Video sessions: upload a video, prompt objects on any frame, stream propagation as NDJSON."""

from __future__ import annotations

import io
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from fastapi import APIRouter, File, Request, UploadFile
from fastapi.responses import Response, StreamingResponse

from ... import rle
from ...predictors import VideoPredictor
from ...video.io import VideoReadError, open_video
from ..errors import ApiError
from ..schemas import PromptRequest, PropagateRequest
from ..sessions import VideoSession
from ._prompt import check_bounds, request_prompt

router = APIRouter()


def _objects(obj_ids, logits) -> list[dict]:
    return rle.object_records(obj_ids, (logits[:, 0] > 0).cpu().numpy())


def _predictor(request: Request) -> VideoPredictor:
    engine = request.app.state.engine
    if getattr(engine, "video_predictor", None) is None:
        engine.video_predictor = VideoPredictor(engine.model, progress=False)
    return engine.video_predictor


@router.post("/v1/videos", tags=["videos"])
def upload_video(request: Request, file: UploadFile = File(...)) -> dict:
    """Upload a video file (mp4, mov, ...): opens a tracking session."""
    limit = request.app.state.config.max_upload_bytes
    folder = Path(tempfile.mkdtemp(prefix="samkit-video-"))
    path = folder / ("video" + (Path(file.filename or "").suffix or ".mp4"))
    size = 0
    with open(path, "wb") as f:
        while chunk := file.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                shutil.rmtree(folder, ignore_errors=True)
                raise ApiError(413, "upload_too_large", f"the upload is over the limit of {limit} bytes")
            f.write(chunk)
    try:
        video = open_video(path)
    except (VideoReadError, OSError, ValueError) as e:
        shutil.rmtree(folder, ignore_errors=True)
        raise ApiError(415, "unsupported_video", f"the upload is not a readable video: {e}") from None
    state = _predictor(request).init_state(video)
    s = VideoSession(uuid.uuid4().hex, folder, state)
    request.app.state.sessions.add(s)
    return {
        "video_id": s.video_id,
        "num_frames": state.num_frames,
        "width": state.video_width,
        "height": state.video_height,
        "fps": getattr(video, "fps", None),
    }


@router.get("/v1/videos/{video_id}/frames/{frame_idx}", tags=["videos"])
def get_frame(request: Request, video_id: str, frame_idx: int) -> Response:
    """One frame as JPEG (for scrubbing in the page)."""
    from PIL import Image

    s = request.app.state.sessions.get(video_id)
    if not 0 <= frame_idx < s.state.num_frames:
        raise ApiError(404, "unknown_frame", f"frame {frame_idx} out of range (0..{s.state.num_frames - 1})")
    buf = io.BytesIO()
    Image.fromarray(s.state.video.frame(frame_idx)).save(buf, format="JPEG", quality=90)
    return Response(buf.getvalue(), media_type="image/jpeg")


@router.post("/v1/videos/{video_id}/prompts", tags=["videos"])
def add_prompt(request: Request, video_id: str, body: PromptRequest) -> dict:
    """Clicks and/or a box for one object on one frame; returns every object's mask on that frame."""
    s = request.app.state.sessions.get(video_id)
    if body.text is not None:
        return _text_prompt(request, s, body)
    if body.obj_id is None:
        raise ApiError(422, "invalid_request", "give obj_id (or text, to add what it names)")
    if not body.points and body.box is None:
        raise ApiError(422, "invalid_request", "give points or a box")
    prompt = check_bounds(
        request_prompt(body.points, body.labels, body.box), s.state.video_width, s.state.video_height
    )
    if body.frame_idx >= s.state.num_frames:
        raise ApiError(
            422, "invalid_request", f"frame_idx {body.frame_idx} out of range (0..{s.state.num_frames - 1})"
        )
    engine = request.app.state.engine
    with s.lock, engine.model_lock:
        try:
            f, ids, logits = _predictor(request).add_new_points_or_box(
                s.state,
                body.frame_idx,
                body.obj_id,
                points=prompt.point_coords,
                labels=prompt.point_labels,
                box=prompt.box,
                clear_old_points=body.clear_old_points,
            )
        except ValueError as e:
            raise ApiError(422, "invalid_request", str(e)) from None
    return {"frame_idx": f, "objects": _objects(ids, logits)}


def _text_prompt(request: Request, s, body: PromptRequest) -> dict:
    """Every object the text names on one frame becomes a new object (the next free integer ids)."""
    from .segment import detect

    if body.points or body.box is not None or body.obj_id is not None:
        raise ApiError(422, "invalid_request", "text adds new objects: give no obj_id, points or box")
    if body.frame_idx >= s.state.num_frames:
        raise ApiError(
            422, "invalid_request", f"frame_idx {body.frame_idx} out of range (0..{s.state.num_frames - 1})"
        )
    frame = s.state.video.frame(body.frame_idx)
    d = detect(request, [frame], body.text, body.box_threshold, body.text_threshold)[0]
    engine = request.app.state.engine
    added = []
    f, ids, logits = body.frame_idx, list(s.state.obj_ids), None
    with s.lock, engine.model_lock:
        next_id = max([o for o in s.state.obj_ids if isinstance(o, int)], default=0) + 1
        for box, label, score in zip(d.boxes, d.labels, d.scores):
            f, ids, logits = _predictor(request).add_new_points_or_box(
                s.state, body.frame_idx, next_id, box=box
            )
            added.append({"obj_id": next_id, "label": label, "score": round(float(score), 5)})
            next_id += 1
    objects = _objects(ids, logits) if logits is not None else []
    return {"frame_idx": f, "objects": objects, "added": added}


@router.post("/v1/videos/{video_id}/propagate", tags=["videos"])
def propagate(request: Request, video_id: str, body: PropagateRequest) -> StreamingResponse:
    """Track all objects; streams one NDJSON line per frame: {"frame_idx", "objects": [...]}."""
    s = request.app.state.sessions.get(video_id)
    if not s.state.objects:
        raise ApiError(422, "invalid_request", "add prompts before propagating")
    engine = request.app.state.engine
    pred = _predictor(request)
    if not s.lock.acquire(timeout=30):
        raise ApiError(
            503, "busy", "this video is being tracked by another request", headers={"Retry-After": "5"}
        )

    def step(gen):
        with engine.model_lock:  # one frame at a time, so other requests interleave
            return next(gen, None)

    async def lines():
        # An async generator: when the client disconnects, Starlette cancels it at an await, so the
        # finally below always runs and the session is never left locked.
        from starlette.concurrency import run_in_threadpool

        gen = pred.propagate_in_video(
            s.state,
            start_frame_idx=body.start_frame_idx,
            max_frame_num_to_track=body.max_frame_num_to_track,
            reverse=body.reverse,
        )
        try:
            while True:
                item = await run_in_threadpool(step, gen)
                if item is None:
                    break
                f, ids, logits = item
                s.last_used = time.monotonic()
                yield json.dumps({"frame_idx": f, "objects": _objects(ids, logits)}) + "\n"
        except Exception as e:  # the stream has started: report in-band
            yield json.dumps({"error": {"code": "tracking_failed", "message": str(e)}}) + "\n"
        finally:
            gen.close()
            s.lock.release()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


@router.delete("/v1/videos/{video_id}", tags=["videos"])
def delete_video(request: Request, video_id: str) -> dict:
    if not request.app.state.sessions.remove(video_id):
        raise ApiError(404, "unknown_video", f"no video session {video_id!r}")
    return {"deleted": video_id}
