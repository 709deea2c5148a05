"""Label Studio's ML backend, served by samkit at ``/label-studio``: set the project's model URL to
``http://HOST:8000/label-studio`` and interactive pre-annotation sends its keypoints and rectangles
here; the answer is a brush mask.

``GET /label-studio/health``
    ``{"status": "UP", "model_class": "samkit"}``.
``POST /label-studio/setup``
    ``{"project", "schema" (the labeling config), "hostname", "access_token", ...}`` ->
    ``{"model_version"}``. The hostname and token are kept to fetch task images given as paths of
    that Label Studio (``/data/upload/...``).
``POST /label-studio/predict``
    ``{"tasks": [{"id", "data": {"image": URL}}], "label_config", "params": {"context": {"result":
    [...]}}}`` (the context may also come at the top level, as older versions send it). The context's
    ``keypointlabels`` results are clicks (``is_positive`` false: background) and a
    ``rectanglelabels`` result is a box, in percent of the image as Label Studio gives them. Answer:
    ``{"results": [{"result": [{"type": "brushlabels", "value": {"format": "rle", "rle": [...],
    "brushlabels": [label]}, "from_name", "to_name", "original_width", "original_height"}],
    "model_version", "score"}]}``, the mask in Label Studio's brush RLE (:func:`brush_rle`). Without
    a context (batch pre-annotation) a task gets no result.

Images: ``data:`` URIs, ``http(s)://`` URLs, and paths of the Label Studio set up (fetched with its
token). Errors: 4xx with ``{"error": {"code", "message"}}``.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from ...prompts import Prompt
from ..errors import ApiError
from ._prompt import best_mask, check_bounds, request_prompt
from .images import ensure_embedding, image_from_bytes

__all__ = ["brush_rle", "brush_rle_decode", "router"]

router = APIRouter(prefix="/label-studio", tags=["integrations"])

MODEL_VERSION = "samkit"


# --- Label Studio's brush RLE (the rle-pack bit stream of its brush tool) -------------------------

# run-length field widths: a run of n values stores n - 1 in 3, 4, 8 or 16 bits
_RUN_BITS = (3, 4, 8, 16)


def brush_rle(mask: np.ndarray) -> list[int]:
    """A binary mask (H, W) as Label Studio's brush RLE: the RGBA image (255 where the mask is, 0
    elsewhere, all four channels) flattened, as a bit stream of 32 bits length, 5 bits word size - 1,
    four 4-bit run-field widths - 1, then per run a 1 (repeat), 2 bits choosing the width, the run
    length - 1 and the 8-bit value; packed into bytes, most significant bit first."""
    flat = np.repeat(np.asarray(mask, dtype=bool).ravel(), 4)  # RGBA
    n = flat.size
    fields = [(n, 32), (7, 5)] + [(b - 1, 4) for b in _RUN_BITS]  # (value, bits)
    if n:
        change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        starts = np.concatenate([[0], change])
        lengths = np.diff(np.concatenate([starts, [n]]))
        for start, length in zip(starts.tolist(), lengths.tolist()):
            value = 255 if flat[start] else 0
            while length > 0:
                run = min(length, 1 << 16)
                width = next(i for i, b in enumerate(_RUN_BITS) if run - 1 < (1 << b))
                fields += [(1, 1), (width, 2), (run - 1, _RUN_BITS[width]), (value, 8)]
                length -= run
    bits = "".join(format(v, f"0{b}b") for v, b in fields)
    bits += "0" * (-len(bits) % 8)
    return list(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))


def brush_rle_decode(rle: list[int], height: int, width: int) -> np.ndarray:
    """The (H, W) bool mask of a brush RLE (its alpha channel > 0); literal runs are read too."""
    bits = "".join(format(b, "08b") for b in rle)
    pos = 0

    def read(k: int) -> int:
        nonlocal pos
        v = int(bits[pos : pos + k], 2)
        pos += k
        return v

    n = read(32)
    word = read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(n, dtype=np.uint8)
    i = 0
    while i < n:
        repeat = read(1)
        j = i + 1 + read(sizes[read(2)])
        if repeat:
            out[i:j] = read(word)
        else:
            for k in range(i, j):
                out[k] = read(word)
        i = j
    return out.reshape(height, width, 4)[:, :, 3] > 0


# --- the backend ---------------------------------------------------------------------------------


class SetupRequest(BaseModel):
    project: Any = None
    schema_: str | None = Field(None, alias="schema")
    hostname: str | None = None
    access_token: str | None = None
    model_version: str | None = None


class PredictRequest(BaseModel):
    tasks: list[dict] = Field(max_length=16)
    label_config: str | None = None
    project: Any = None
    params: dict | None = None
    context: dict | None = None


@router.get("/health")
def health() -> dict:
    return {"status": "UP", "model_class": MODEL_VERSION}


def _setup(request: Request) -> dict:
    """What /setup said (the Label Studio host, its token, the labeling config), per app."""
    return request.app.state.label_studio


@router.post("/setup")
def setup(request: Request, body: SetupRequest) -> dict:
    state = _setup(request)
    if body.hostname or body.access_token:
        # the host and its token go together: a new host never inherits the old host's token
        state["hostname"], state["access_token"] = body.hostname, body.access_token
    if body.schema_:
        state["schema"] = body.schema_
    return {"model_version": MODEL_VERSION}


def _brush_tag(config: str | None, context: list[dict]) -> tuple[str, str]:
    """(from_name, to_name) of the labeling config's BrushLabels tag (defaults: tag / image)."""
    m = re.search(r"<BrushLabels\b[^>]*>", config or "")
    if m:
        name = re.search(r'\bname="([^"]+)"', m.group(0))
        to = re.search(r'\btoName="([^"]+)"', m.group(0))
        if name and to:
            return name.group(1), to.group(1)
    to_name = next((r.get("to_name") for r in context if r.get("to_name")), "image")
    return "tag", to_name


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: a token sent to Label Studio must not travel to another host."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise urllib.error.HTTPError(
            req.full_url, code, f"redirected to {newurl} (not followed)", headers, fp
        )


def _public_host(url: str) -> None:
    """Refuse URLs whose host resolves to a private, loopback or link-local address (the server's own
    network), unless it is the Label Studio host given in /setup."""
    import ipaddress
    import socket
    from urllib.parse import urlsplit

    host = urlsplit(url).hostname or ""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except OSError:
        raise ApiError(502, "image_unreachable", f"cannot resolve the image host {host!r}") from None
    for a in addresses:
        ip = ipaddress.ip_address(a.split("%")[0])
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast:
            raise ApiError(403, "forbidden_url", f"the image host {host!r} is not a public address")


def _image_bytes(url: Any, limit: int, setup: dict) -> bytes:
    if not isinstance(url, str) or not url:
        raise ApiError(422, "invalid_request", "the task has no image URL in data.image")
    if url.startswith("data:"):
        from .images import decode_base64

        return decode_base64(url.split(",", 1)[-1], limit)
    headers = {}
    if url.startswith("/"):
        host = setup.get("hostname")
        if not host:
            raise ApiError(
                422,
                "invalid_request",
                f"the image {url!r} is a Label Studio path, but no hostname was given in /setup "
                "(set LABEL_STUDIO_HOST and the API key in the ML backend's connection)",
            )
        url = host.rstrip("/") + url
        if setup.get("access_token"):
            headers["Authorization"] = f"Token {setup['access_token']}"
    elif url.startswith(("http://", "https://")):
        _public_host(url)  # a task URL from anywhere else may not reach the server's own network
    else:
        raise ApiError(422, "invalid_request", f"cannot read the image {url!r}: give a URL or a data: URI")
    opener = urllib.request.build_opener(_NoRedirects)
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=30) as r:
            data = r.read(limit + 1)
    except (urllib.error.URLError, OSError) as e:
        raise ApiError(502, "image_unreachable", f"cannot fetch the image {url}: {e}") from None
    if len(data) > limit:
        raise ApiError(413, "upload_too_large", f"the image is over the limit of {limit} bytes")
    return data


def _prompt(context: list[dict]) -> tuple[Prompt, str | None, int, int]:
    """Clicks and a box from the context's results (percent of the image) -> pixels, the label."""
    if len(context) > 64:
        raise ApiError(422, "invalid_request", "at most 64 context results (clicks and a box)")
    points, labels, box, label, size = [], [], None, None, None
    for r in context:
        kind, v = r.get("type", ""), r.get("value") or {}
        if kind not in ("keypointlabels", "rectanglelabels"):
            continue
        w, h = r.get("original_width"), r.get("original_height")
        if not (isinstance(w, (int, float)) and isinstance(h, (int, float)) and w > 0 and h > 0):
            raise ApiError(
                422, "invalid_request", "a context result needs original_width and original_height"
            )
        size = (int(w), int(h))
        try:
            x, y = float(v["x"]) * w / 100, float(v["y"]) * h / 100
            names = v.get(kind) or []
            if kind == "keypointlabels":
                points.append([x, y])
                labels.append(0 if r.get("is_positive") is False else 1)
            else:
                box = [x, y, x + float(v["width"]) * w / 100, y + float(v["height"]) * h / 100]
        except (KeyError, TypeError, ValueError):
            raise ApiError(
                422, "invalid_request", f"a {kind} result needs value.x, value.y (and width, height)"
            ) from None
        label = label or (names[0] if names else None)
    if size is None:
        raise ApiError(422, "invalid_request", "the context has no keypointlabels or rectanglelabels result")
    return request_prompt(points, labels, box), label, size[0], size[1]


@router.post("/predict")
def predict(request: Request, body: PredictRequest) -> dict:
    engine = request.app.state.engine
    context = ((body.params or {}).get("context") or body.context or {}).get("result") or []
    setup = _setup(request)
    from_name, to_name = _brush_tag(body.label_config or setup.get("schema"), context)
    results = []
    for task in body.tasks:
        if not context:
            results.append({"result": [], "model_version": MODEL_VERSION})
            continue
        prompt, label, w0, h0 = _prompt(context)
        data = _image_bytes(
            (task.get("data") or {}).get("image"), request.app.state.config.max_upload_bytes, setup
        )
        image_id, image = image_from_bytes(request, data)
        emb = ensure_embedding(request, image_id, image)
        h, w = emb.orig_hw
        if (w, h) != (w0, h0):  # the context's percent are of the image Label Studio shows
            sx, sy = w / w0, h / h0
            prompt = Prompt(
                tuple((x * sx, y * sy) for x, y in prompt.points),
                prompt.labels,
                None
                if prompt.box is None
                else (prompt.box[0] * sx, prompt.box[1] * sy, prompt.box[2] * sx, prompt.box[3] * sy),
            )
        check_bounds(prompt, w, h)
        mask, score = best_mask(engine, image_id, emb, prompt)
        value = {"format": "rle", "rle": brush_rle(mask)}
        if label is not None:
            value["brushlabels"] = [label]
        results.append(
            {
                "result": [
                    {
                        "from_name": from_name,
                        "to_name": to_name,
                        "type": "brushlabels",
                        "value": value,
                        "original_width": w,
                        "original_height": h,
                        "image_rotation": 0,
                    }
                ],
                "model_version": MODEL_VERSION,
                "score": score,
            }
        )
    return {"results": results}
