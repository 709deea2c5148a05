"""Uploading images: decode safely, hash, encode once, cache."""

from __future__ import annotations

import base64
import binascii

import numpy as np
from fastapi import APIRouter, File, Request, UploadFile

from ... import transforms as T
from ..errors import ApiError
from ..schemas import ImageInfo

router = APIRouter()


# how each kind of undecodable upload is answered
_DECODE_ERRORS = {
    "empty": (400, "empty_image"),
    "too_large": (413, "image_too_large"),
    "unsupported": (415, "unsupported_image"),
    "corrupt": (400, "corrupt_image"),
}


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """Bytes -> HxWx3 uint8 (:func:`samkit.transforms.decode_image`), its errors as API errors."""
    try:
        return T.decode_image(data, max_pixels)
    except T.ImageDecodeError as e:
        status, code = _DECODE_ERRORS[e.kind]
        raise ApiError(status, code, str(e)) from None


def image_from_bytes(request: Request, data: bytes) -> tuple[str, np.ndarray | None]:
    engine = request.app.state.engine
    image_id = engine.key(data)
    engine.uploads.put(image_id, data, len(data))  # kept (bounded) for /v1/automatic
    if engine.lookup(image_id) is not None:
        return image_id, None
    return image_id, decode_image(data, request.app.state.config.max_pixels)


def ensure_embedding(request: Request, image_id: str, image: np.ndarray | None):
    engine = request.app.state.engine
    emb = engine.lookup(image_id)
    if emb is None:
        if image is None:
            raise ApiError(404, "unknown_image", f"no image {image_id!r}; upload it with POST /v1/images")
        emb = engine.encode(image_id, image)
    return emb


def decode_base64(text: str, limit: int) -> bytes:
    if len(text) > limit * 4 // 3 + 4:
        raise ApiError(413, "upload_too_large", f"the image is over the limit of {limit} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_base64", "image is not valid base64") from None


@router.post("/v1/images", response_model=ImageInfo, tags=["images"])
def upload_image(request: Request, file: UploadFile = File(...)) -> ImageInfo:
    """Upload an image: it is decoded, encoded once and cached under its SHA-256."""
    limit = request.app.state.config.max_upload_bytes
    data = file.file.read(limit + 1)
    if len(data) > limit:
        raise ApiError(413, "upload_too_large", f"the upload is over the limit of {limit} bytes")
    image_id, image = image_from_bytes(request, data)
    cached = image is None
    emb = ensure_embedding(request, image_id, image)
    h, w = emb.orig_hw
    return ImageInfo(image_id=image_id, width=w, height=h, cached=cached)
