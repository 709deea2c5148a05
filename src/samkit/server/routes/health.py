from __future__ import annotations

from fastapi import APIRouter, Request

from ..schemas import Health

router = APIRouter()


@router.get("/healthz", response_model=Health, tags=["service"])
def healthz(request: Request) -> Health:
    """Liveness and cache sizes (no API key needed)."""
    engine = request.app.state.engine
    return Health(
        status="ok",
        model=engine.model.cfg.name,
        device=str(engine.model.device),
        policy=engine.model.policy.as_dict(),
        embeddings_cached=len(engine.embeddings),
        embedding_cache_bytes=engine.embeddings.nbytes,
        masks_cached=len(engine.masks),
        queue=engine.queue_size,
        video_sessions=len(request.app.state.sessions),
        stream_sessions=request.app.state.stream_sessions,
        head=None
        if engine.head is None
        else {"kind": engine.head.kind, "classes": list(engine.head.classes)},
        client_decoding=getattr(request.app.state, "client_decoder", None) is not None,
    )
