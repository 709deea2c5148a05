"""Live tracking over a WebSocket, ``/v1/stream``: frames in, every object's mask out, one at a time.

One connection is one live session (a :class:`samkit.StreamTracker` on the server's model). The
protocol is JSON text messages plus binary frames:

**Connecting.** ``ws://HOST/v1/stream``. When the server has an API key, give it as an
``Authorization: Bearer <key>`` header or, from a browser (which cannot set headers on a
WebSocket), as ``?key=<key>``. The server accepts the connection first and then closes it, when it
must, with a code and a reason the client can read: a missing or wrong key, 1008 ``unauthorized
...``; more than ``stream_sessions`` live sessions at once, 1013 ``too many live sessions ...``.

**Client to server.**

- A *binary* message is one frame: a JPEG or PNG (any image PIL reads), at most
  ``max_upload_bytes`` bytes and ``max_pixels`` pixels. The first frame sets the stream's size;
  later frames of another size are resized to it.
- A *text* message is one command, a JSON object with exactly one of these keys:

  - ``{"prompts": {"<obj_id>": {"points": [[x, y], ...], "labels": [1, 0, ...]} | {"box": [x0, y0,
    x1, y1]}, ...}}``: applied with the NEXT frame, in its pixels (``points`` with ``labels``,
    ``box``, or both). An id not tracked yet starts a new object on that frame (it needs a box or a
    positive click); a tracked one is corrected there. Object ids are JSON keys, so strings: an
    all-digit key is the integer (``"1"`` is object 1), any other is the string. Prompts sent for
    the same object before one frame add up (their clicks together; a later box replaces an
    earlier one).
  - ``{"remove": obj_id}``: stop tracking an object, at once (an all-digit string is the integer).
  - ``{"reset": true}``: a new session: every object, the pending prompts and the frame count go.

  A command that succeeds has no answer. A session holds at most 32 objects, and at most 64 clicks
  per object wait for a frame (beyond: ``bad_prompt``).

**Server to client** (text, JSON):

- The answer to each frame, in the order the frames came::

      {"frame": 12, "width": 640, "height": 480, "ms": 21.4,
       "objects": [{"obj_id": 1, "area": 5210, "rle": {"size": [480, 640], "counts": "..."}}]}

  ``frame`` counts the frames tracked in this session from 0; ``width``/``height`` are the stream's
  (the masks' size); ``ms`` is the time tracking took; each mask is COCO RLE, as in the video routes.
- A frame that cannot be used is answered ``{"frame": null, "error": {"code", "message"}}``, with
  code ``bad_frame`` (not a decodable image) or ``frame_too_large`` (over ``max_pixels``), and then
  its prompts wait for the next frame; or with code ``bad_prompt`` (a prompt that the frame cannot
  take: out of its bounds, a new object with only background clicks...), and then the prompts sent
  for it are dropped. Either way that frame is not tracked (the frame count does not move), the
  session is as it was and the socket stays open.
- A command that cannot be done is answered ``{"command": "prompts" | "remove" | "reset", "error":
  {"code", "message"}}`` (codes ``bad_prompt``, ``bad_command``, ``unknown_object``); nothing
  changes and the socket stays open. So an answer with a ``frame`` key answers a frame, one with a
  ``command`` key a command.

**Flow control.** The client sends the next frame once it has the answer to the previous one.
Frames are never queued on the server: it reads the next message only after answering a frame, so
a client that sends faster simply waits on TCP. A camera client sends its newest frame each time
and drops the others.

**Closing codes.** Broken protocol closes the socket with a code and a reason (the server itself
goes on): 1007 a text message that is not JSON (a frame sent as text, say); 1003 JSON that is not
an object, an unknown command, or more than one command in a message; 1009 a message too big (a
frame over ``max_upload_bytes``, a command over 64 KiB; uvicorn itself closes with 1009 past its
``--ws-max-size``, 16 MiB by default); 1001 nothing received for
``stream_idle_seconds``; 1011 an unexpected error while tracking (logged on the server); and 1008
and 1013 above.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Mapping

from fastapi import APIRouter, WebSocket
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocketDisconnect

from ... import rle
from ... import transforms as T
from ...prompts import Prompt, PromptError
from ...stream import StreamError, StreamTracker
from ..config import bearer_token, key_ok

router = APIRouter()
log = logging.getLogger("samkit.server")

COMMAND_BYTES = 64 * 2**10  # a command is a few clicks: anything bigger is not one
# a session's bounds: every object costs tracking time on every frame, clicks cost decoder time
MAX_OBJECTS = 32
MAX_POINTS = 64  # clicks of one object waiting for a frame
COMMANDS = ("prompts", "remove", "reset")
PROMPT_KEYS = {"points", "labels", "box"}


class _Close(Exception):
    """Broken protocol: close the socket with this code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code, self.reason = code, reason


class _Refused(Exception):
    """A command that cannot be done: answered with an error, the socket stays open."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def _obj_id(key):
    """An object id from JSON: an all-digit string is the integer (as in FRAME:OBJ prompts)."""
    if isinstance(key, str) and key.isascii() and key.isdigit():
        return int(key)
    if isinstance(key, bool) or not isinstance(key, (int, str)):
        raise _Refused("bad_command", f"an object id is an integer or a string, got {json.dumps(key)}")
    return key


def _error(code: str, message: str, **where) -> str:
    return json.dumps({**where, "error": {"code": code, "message": message}})


class _Live:
    """One connection's session: the tracker and the prompts waiting for the next frame."""

    def __init__(self, engine, config) -> None:
        self.engine, self.config = engine, config
        self.tracker = StreamTracker(engine.model)
        self.pending: dict = {}

    # --- commands (text messages) -------------------------------------------------------------------

    def command(self, text: str) -> str | None:
        """Do one command (in a worker thread: ``remove`` waits for the model); None when done, else
        the error answer as JSON text. Broken protocol raises :class:`_Close`."""
        if len(text) > COMMAND_BYTES:
            raise _Close(1009, f"message too big: a command is at most {COMMAND_BYTES} bytes")
        try:
            doc = json.loads(text)
        except ValueError:
            raise _Close(1007, "invalid JSON: commands are JSON text, frames are binary messages") from None
        if not isinstance(doc, dict):
            raise _Close(1003, f"unsupported command: a command is a JSON object, got {type(doc).__name__}")
        if len(doc) != 1 or next(iter(doc)) not in COMMANDS:
            keys = ", ".join(sorted(doc)) or "none"
            raise _Close(1003, f"unsupported command ({keys}): send one of {', '.join(COMMANDS)}")
        name, value = next(iter(doc.items()))
        try:
            getattr(self, "_" + name)(value)
        except _Refused as e:
            return _error(e.code, e.message, command=name)
        return None

    def _prompts(self, value) -> None:
        if not isinstance(value, Mapping) or not value:
            raise _Refused("bad_prompt", 'prompts is an object {"<obj_id>": {"points", "labels"} or {"box"}}')
        merged = {}
        for key, spec in value.items():
            obj_id = _obj_id(key)
            where = f"object {obj_id!r}"
            if not isinstance(spec, Mapping) or not spec or set(spec) - PROMPT_KEYS:
                raise _Refused(
                    "bad_prompt",
                    f"{where}: a prompt is {{'points': [[x, y]], 'labels': [1]}} and/or {{'box': [x0, y0, x1, y1]}}",
                )
            try:  # the shapes now; the bounds with the frame it goes with
                Prompt.from_fields(spec.get("points"), spec.get("labels"), spec.get("box"), where)
            except PromptError as e:
                raise _Refused("bad_prompt", str(e)) from None
            merged[obj_id] = _merge(merged.get(obj_id, self.pending.get(obj_id)), spec)
            if len(merged[obj_id].get("points") or ()) > MAX_POINTS:
                raise _Refused("bad_prompt", f"{where}: more than {MAX_POINTS} clicks before one frame")
        objects = set(self.tracker.obj_ids) | set(self.pending) | set(merged)
        if len(objects) > MAX_OBJECTS:
            raise _Refused(
                "bad_prompt", f"at most {MAX_OBJECTS} objects in a live session; remove some first"
            )
        self.pending.update(merged)

    def _remove(self, value) -> None:
        obj_id = _obj_id(value)
        was_pending = self.pending.pop(obj_id, None) is not None
        if obj_id in self.tracker.obj_ids:
            with self.engine.model_lock:
                self.tracker.remove_object(obj_id)
        elif not was_pending:
            raise _Refused(
                "unknown_object", f"unknown object {obj_id!r}; the objects are {self.tracker.obj_ids}"
            )

    def _reset(self, value) -> None:
        if value is not True:
            raise _Refused("bad_command", 'reset is {"reset": true}')
        self.tracker = StreamTracker(self.engine.model)
        self.pending = {}

    # --- frames (binary messages) -------------------------------------------------------------------

    def frame(self, data: bytes) -> str:
        """Decode and track one frame (in a worker thread); the answer as JSON text."""
        try:
            image = T.decode_image(data, self.config.max_pixels)
        except T.ImageDecodeError as e:  # the prompts wait for the next frame
            code = "frame_too_large" if e.kind == "too_large" else "bad_frame"
            return _error(code, str(e), frame=None)
        prompts, self.pending = self.pending, {}
        tracker = self.tracker
        try:
            with self.engine.model_lock:
                t0 = time.perf_counter()
                masks = tracker.track(image, prompts)
                ms = (time.perf_counter() - t0) * 1000
        except StreamError as e:  # the prompts were checked against the frame: nothing changed
            return _error("bad_prompt", str(e), frame=None)
        h, w = tracker.frame_size
        objects = rle.object_records(masks.keys(), masks.values())
        return json.dumps(
            {"frame": tracker.frame_index, "width": w, "height": h, "ms": round(ms, 2), "objects": objects}
        )


def _merge(old: Mapping | None, new: Mapping) -> dict:
    """Two prompts for one object before one frame: their clicks together, the later box."""
    if old is None:
        return dict(new)

    def labels(spec):  # checked by Prompt.from_fields: none given means 1 for every point
        points = list(spec.get("points") or [])
        return list(spec.get("labels") or [1] * len(points))

    out = dict(old)
    if new.get("points"):
        out["points"] = list(old.get("points") or []) + list(new["points"])
        out["labels"] = labels(old) + labels(new)
    if new.get("box") is not None:
        out["box"] = new["box"]
    return out


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    # a close reason is at most 123 bytes (RFC 6455)
    reason = reason.encode()[:123].decode(errors="ignore")
    try:
        await ws.close(code, reason)
    except (RuntimeError, OSError, WebSocketDisconnect):  # the client is gone already
        pass


@router.websocket("/v1/stream")
async def stream(ws: WebSocket) -> None:
    """Live tracking: binary frames in, every object's mask out (the protocol: this module's doc)."""
    app = ws.app
    config = app.state.config
    await ws.accept()
    token = bearer_token(ws.headers.get("authorization")) or ws.query_params.get("key", "")
    if not key_ok(config, token):
        await _close(
            ws, 1008, "unauthorized: missing or wrong API key (Authorization: Bearer <key> or ?key=<key>)"
        )
        return
    if app.state.stream_sessions >= config.stream_sessions:
        await _close(ws, 1013, f"too many live sessions (at most {config.stream_sessions}); try again later")
        return
    app.state.stream_sessions += 1
    try:
        await _serve(ws, _Live(app.state.engine, config), config)
    except (WebSocketDisconnect, OSError):
        pass  # the client went away
    except Exception:
        log.exception("live tracking failed")
        await _close(ws, 1011, "internal error while tracking")
    finally:
        app.state.stream_sessions -= 1


async def _serve(ws: WebSocket, live: _Live, config) -> None:
    idle = config.stream_idle_seconds
    while True:
        try:
            message = await asyncio.wait_for(ws.receive(), timeout=idle)
        except asyncio.TimeoutError:
            await _close(ws, 1001, f"idle: nothing received for {idle:g} s")
            return
        if message["type"] == "websocket.disconnect":
            return
        data, text = message.get("bytes"), message.get("text")
        try:
            if data is not None:
                if len(data) > config.max_upload_bytes:
                    raise _Close(1009, f"message too big: a frame is at most {config.max_upload_bytes} bytes")
                await ws.send_text(await run_in_threadpool(live.frame, data))
            elif text is not None:
                error = await run_in_threadpool(live.command, text)
                if error is not None:
                    await ws.send_text(error)
        except _Close as e:
            await _close(ws, e.code, e.reason)
            return
