"""Client-side decoding (``samkit serve --client-decoding``): the page runs the mask decoder itself, with
onnxruntime-web, on the image embedding the server made, so a click costs no request.

- ``GET /v1/decoder``: what the page needs to know (input size, the embedding's layout);
- ``GET /v1/decoder.onnx``: the model's ``decoder.onnx`` (exported at start-up), with an ETag;
- ``GET /v1/images/{image_id}/embedding``: the cached embedding as float16 bytes (``image_embed``,
  ``high_res_feats_0``, ``high_res_feats_1`` one after the other, little-endian), with an ETag;
- ``GET /static/ort/{file}``: onnxruntime-web's WebGPU and WASM backends, shipped in the package
  (:mod:`samkit.server.vendor`), without a key like the page itself.

The server still answers ``POST /v1/segment`` for clients that do not decode.
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse

from ..errors import ApiError

router = APIRouter(tags=["client decoding"])
public = APIRouter(include_in_schema=False)

EMBEDDING_ORDER = ("image_embed", "high_res_feats_0", "high_res_feats_1")
_MEDIA = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm"}


@dataclass(frozen=True)
class ClientDecoder:
    """The decoder graph handed to pages, made once when the server starts."""

    onnx: bytes
    etag: str
    image_size: int
    shapes: dict
    weights: str  # what identifies the model's weights (the embeddings depend on them)

    @classmethod
    def export(cls, model) -> ClientDecoder:
        from ...checkpoints import weights_sha256
        from ...export import export_onnx
        from ...export.onnx import encoder_shapes

        with tempfile.TemporaryDirectory() as d:
            export_onnx(model, d, graphs=("decoder",))
            data = (Path(d) / "decoder.onnx").read_bytes()
        shapes = {name: encoder_shapes(model)[name] for name in EMBEDDING_ORDER}
        etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
        return cls(data, etag, model.image_size, shapes, weights_sha256(model)[:16])


def _decoder(request: Request) -> ClientDecoder:
    d = getattr(request.app.state, "client_decoder", None)
    if d is None:
        raise ApiError(
            404,
            "client_decoding_off",
            "this server does not hand out its decoder: start it with samkit serve --client-decoding",
        )
    return d


def _not_modified(request: Request, etag: str) -> bool:
    return etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]


@router.get("/v1/decoder")
def decoder_info(request: Request) -> dict:
    """The decoder's inputs and the embedding's layout, for a page that decodes clicks itself."""
    from ..vendor import ORT_WEB_VERSION  # (not at import: `python -m samkit.server.vendor` runs it)

    d = _decoder(request)
    return {
        "model": request.app.state.engine.model.cfg.name,
        "weights": d.weights,
        "image_size": d.image_size,
        "decoder": "/v1/decoder.onnx",
        "embedding": {"dtype": "float16", "order": list(EMBEDDING_ORDER), "shapes": d.shapes},
        "onnxruntime_web": {
            "version": ORT_WEB_VERSION,
            "path": "/static/ort/",
            # the page loads one: WebGPU where the browser has an adapter, else WASM
            "bundles": {"webgpu": "ort.webgpu.min.js", "wasm": "ort.wasm.min.js"},
        },
    }


@router.get("/v1/decoder.onnx")
def decoder_onnx(request: Request) -> Response:
    """The mask decoder as ONNX (decoder.onnx of ``samkit export onnx``)."""
    d = _decoder(request)
    headers = {"ETag": d.etag, "Cache-Control": "private, no-cache"}  # revalidated: a 304 costs nothing
    if _not_modified(request, d.etag):
        return Response(status_code=304, headers=headers)
    return Response(d.onnx, media_type="application/octet-stream", headers=headers)


@router.get("/v1/images/{image_id}/embedding")
def embedding(request: Request, image_id: str, weights: str | None = None) -> Response:
    """An uploaded image's embedding as float16 bytes (half the float32 size), in /v1/decoder's order.
    ``weights``: /v1/decoder's ``weights`` for the decoder the client holds. Another model's decoder
    would turn this embedding into wrong masks, so a mismatch is refused (409: fetch the decoder
    again); and with it in the URL, a browser's cached copy belongs to those weights only."""
    d = _decoder(request)
    engine = request.app.state.engine
    if weights is not None and weights != d.weights:
        raise ApiError(
            409,
            "model_mismatch",
            f"this server's embeddings are for weights {d.weights} ({engine.model.cfg.name}), not {weights}: "
            "fetch /v1/decoder and /v1/decoder.onnx again",
        )
    etag = f'"{image_id[:64]}-{d.weights}-f16"'
    # the id is the image's hash: for one set of weights its embedding never changes
    headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
    if _not_modified(request, etag):
        return Response(status_code=304, headers=headers)
    emb = engine.lookup(image_id)
    if emb is None:
        raise ApiError(404, "unknown_image", f"no image {image_id!r}; upload it with POST /v1/images")
    parts = (emb.image_embed, *emb.high_res)
    for name, t in zip(EMBEDDING_ORDER, parts):
        if list(t.shape) != d.shapes[name]:
            raise ApiError(500, "internal", f"{name} has shape {list(t.shape)}, not {d.shapes[name]}")
    data = b"".join(t.detach().to("cpu", torch.float32).numpy().astype("<f2").tobytes() for t in parts)
    return Response(data, media_type="application/octet-stream", headers=headers)


@public.get("/static/ort/{name}")
def ort_file(name: str) -> FileResponse:
    """onnxruntime-web's files (only those shipped: no other path is served)."""
    from ..vendor import ORT_DIR, ORT_WEB_FILES

    if name not in ORT_WEB_FILES and name != "LICENSE.txt":
        raise ApiError(404, "not_found", f"no file {name!r}")
    path = ORT_DIR / name
    if not path.is_file():
        raise ApiError(404, "not_found", f"{name} is not installed (python -m samkit.server.vendor)")
    return FileResponse(
        path,
        media_type=_MEDIA.get(Path(name).suffix, "text/plain"),
        headers={"Cache-Control": "public, max-age=86400"},
    )


def embedding_array(data: bytes, shapes: dict) -> dict[str, np.ndarray]:
    """The inverse of the embedding route (for clients in Python and tests): bytes -> float32 arrays."""
    flat = np.frombuffer(data, "<f2")
    out, at = {}, 0
    for name in EMBEDDING_ORDER:
        n = int(np.prod(shapes[name]))
        out[name] = flat[at : at + n].astype(np.float32).reshape(shapes[name])
        at += n
    if at != flat.size:
        raise ValueError(f"{flat.size} float16 values for {at}")
    return out
