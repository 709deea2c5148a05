"""The HTTP server: an app factory whose lifespan loads the model once.

from samkit.server import create_app, Settings
app = create_app(Settings(model="sam2.1-hiera-tiny", precision="bf16"))
app = create_app()  # everything from the SAMKIT_* environment variables (or the defaults)
"""

from __future__ import annotations

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
