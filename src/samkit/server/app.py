"""The HTTP server: an app factory whose lifespan loads the model once.

from samkit.server import create_app, Settings
app = create_app(Settings(model="sam2.1-hiera-tiny", precision="bf16"))
app = create_app()  # everything from the SAMKIT_* environment variables (or the defaults)
"""

from __future__ import annotations

import json
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request

from ..runtime import tune_allocator
from ..transforms import warm_up_compiled
from . import errors
from .config import Settings, bearer_token, key_ok
from .errors import ApiError
from .routes import client, cvat, health, images, label_studio, page, segment, stream, videos, x_anylabeling
from .sessions import Sessions
from .state import Engine


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes before they are read whole (413): the JSON routes
    (a base64 image, X-AnyLabeling's frames) parse their body at once, before any route can look at
    it. A declared Content-Length is checked first; a chunked body is counted as it arrives."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    def _error(self) -> ApiError:
        return ApiError(413, "upload_too_large", f"the request body is over the limit of {self.limit} bytes")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.limit:
            from fastapi.responses import JSONResponse

            e = self._error()
            return await JSONResponse(errors.error_body(e.code, e.message), status_code=413)(
                scope, receive, send
            )
        seen, over = 0, False

        async def counted():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    over = True
                    raise self._error()  # (the route's body parser turns it into some error answer)
            return message

        async def answer(message):
            # whatever the route answered to a body cut short, the client is told why: 413
            if not over:
                return await send(message)
            if message["type"] == "http.response.start":
                e = self._error()
                body = json.dumps(errors.error_body(e.code, e.message)).encode()
                await send(
                    {
                        "type": "http.response.start",
                        "status": 413,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body, "more_body": False})

        return await self.app(scope, counted, answer)


def _require_key(request: Request) -> None:
    if not key_ok(request.app.state.config, bearer_token(request.headers.get("authorization"))):
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong API key (send 'Authorization: Bearer <key>', or basic auth with the key as password)",
            headers={"WWW-Authenticate": "Bearer"},
        )


def create_app(config: Settings | None = None, model=None, head=None) -> FastAPI:
    """Build the app from ``config`` (default: :class:`Settings` from the ``SAMKIT_*`` environment
    variables). Its lifespan loads the model the settings describe (model, checkpoint, device,
    precision, compile) and the prompt-free head of ``config.head``; ``model`` (a loaded SAM2Model)
    and ``head`` (a loaded PromptFreeHead) skip that (tests, notebooks)."""
    config = config if config is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        tune_allocator()
        m = model if model is not None else config.load_model()
        if m.policy.compile:
            # compile the clicks' mask upsampling now, not during a user's first click
            warm_up_compiled()
        app.state.engine = Engine(m, config)
        app.state.engine.head = head if head is not None else config.load_head(m)
        # the decoder the page runs itself (--client-decoding), exported from this model once
        app.state.client_decoder = client.ClientDecoder.export(m) if config.client_decoding else None
        app.state.sessions = Sessions(config.video_idle_seconds)
        app.state.stream_sessions = 0  # live WebSocket sessions open now (routes/stream.py)
        try:
            yield
        finally:
            app.state.sessions.close()
            app.state.engine.close()

    app = FastAPI(
        title="samkit",
        version=_version(),
        lifespan=lifespan,
        description="Segment anything in images and video (SAM 2 / 2.1). Masks are COCO RLE.",
    )
    app.state.config = config
    app.state.cvat_tracks = cvat.new_track_store()  # CVAT's tracks (routes/cvat.py)
    app.state.label_studio = {}  # what Label Studio's /setup said (routes/label_studio.py)
    errors.install(app)
    # the largest upload as base64 in a JSON body, and room for the rest of the request
    app.add_middleware(BodyLimit, limit=config.max_upload_bytes * 4 // 3 + 2**20)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["*"], allow_headers=["*"]
        )
    app.include_router(health.router)
    app.include_router(page.router)
    app.include_router(client.public)  # onnxruntime-web's files: static, like the page
    auth = [Depends(_require_key)]
    app.include_router(images.router, dependencies=auth)
    app.include_router(segment.router, dependencies=auth)
    app.include_router(videos.router, dependencies=auth)
    app.include_router(client.router, dependencies=auth)
    # annotation tools, each only where the settings name it (--integrations)
    if "cvat" in config.integrations:
        app.include_router(cvat.router, dependencies=auth)
    if "label-studio" in config.integrations:
        app.include_router(label_studio.router, dependencies=auth)
    if "x-anylabeling" in config.integrations:
        # X-AnyLabeling sends its key in a Token header: these routes check it themselves
        app.include_router(x_anylabeling.router)
        app.include_router(x_anylabeling.health_router)
    app.include_router(stream.router)  # a WebSocket: it checks the key itself (header or ?key=)
    return app


def _version() -> str:
    from .. import __version__

    return __version__
