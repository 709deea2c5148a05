"""Prompted segmentation and automatic masks on uploaded images."""

from __future__ import annotations

import base64
import io
import uuid

import numpy as np
import torch
from fastapi import APIRouter, Request

from ... import coco, rle
from ...predictors import AutomaticMaskGenerator
from ...visualize import mask_stats, mask_to_png
from ..errors import ApiError
from ..schemas import AutomaticRequest, MaskOut, SegmentRequest, SegmentResponse
from ._prompt import check_bounds, request_prompt
from .images import decode_base64, ensure_embedding, image_from_bytes

router = APIRouter()


def _embedding_for(request: Request, image_id: str | None, image_b64: str | None):
    if (image_id is None) == (image_b64 is None):
        raise ApiError(400, "bad_request", "give exactly one of image_id or image (base64)")
    if image_b64 is not None:
        data = decode_base64(image_b64, request.app.state.config.max_upload_bytes)
        image_id, image = image_from_bytes(request, data)
        return image_id, ensure_embedding(request, image_id, image)
    return image_id, ensure_embedding(request, image_id, None)


@router.post("/v1/segment", response_model=SegmentResponse, tags=["segment"])
def segment(request: Request, body: SegmentRequest) -> SegmentResponse:
    """Masks for clicks and/or a box, best first; each mask is kept for ``mask_from`` refinement."""
    engine = request.app.state.engine
    if body.head and body.text is not None:
        raise ApiError(422, "invalid_request", "give head or text, not both")
    if body.head:
        return _head(request, body)
    if body.text is not None:
        return _text(request, body)
    if body.classes is not None:
        raise ApiError(422, "invalid_request", "classes go with head: true")
    if not body.points and body.box is None and body.mask_from is None:
        raise ApiError(422, "invalid_request", "give points, a box or mask_from")
    prompt = None
    if body.points or body.box is not None:
        prompt = request_prompt(body.points, body.labels, body.box)
    image_id, emb = _embedding_for(request, body.image_id, body.image)
    h, w = emb.orig_hw
    if prompt is not None:
        check_bounds(prompt, w, h)
    mask_input = None
    if body.mask_from is not None:
        prev = engine.masks.get(body.mask_from)
        if prev is None or prev[0] != image_id:
            raise ApiError(
                404, "unknown_mask", f"no mask {body.mask_from!r} for this image (it may have expired)"
            )
        mask_input = prev[1]
    with engine.model_lock:
        masks, scores, low = engine.predictor(image_id, emb).predict(
            point_coords=None if prompt is None else prompt.point_coords,
            point_labels=None if prompt is None else prompt.point_labels,
            box=None if prompt is None else prompt.box,
            mask_input=mask_input,
            multimask_output=body.multimask,
        )
    out = []
    for i in np.argsort(-scores, kind="stable"):
        m = masks[i] > 0
        mask_id = uuid.uuid4().hex
        engine.masks.put(mask_id, (image_id, torch.from_numpy(low[i][None]).clone()))
        png = None
        if body.output == "png":
            buf = io.BytesIO()
            mask_to_png(m).save(buf, format="PNG")
            png = base64.b64encode(buf.getvalue()).decode()
        out.append(
            MaskOut(mask_id=mask_id, score=float(scores[i]), rle=rle.encode(m), png=png, **mask_stats(m))
        )
    return SegmentResponse(image_id=image_id, width=w, height=h, masks=out)


def _png(mask: np.ndarray) -> str:
    buf = io.BytesIO()
    mask_to_png(mask).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _head(request: Request, body: SegmentRequest) -> SegmentResponse:
    """The server's prompt-free head on one image: a mask per class (label = the class), no prompt."""
    from ...heads import HeadError

    engine = request.app.state.engine
    head = engine.head
    if head is None:
        raise ApiError(
            409, "no_head", "this server has no prompt-free head (start it with samkit serve --head FILE)"
        )
    if body.points or body.box is not None or body.mask_from is not None:
        raise ApiError(422, "invalid_request", "head: true takes no points, box or mask_from")
    try:
        wanted = (
            [head.class_index(c) for c in body.classes] if body.classes else list(range(len(head.classes)))
        )
    except HeadError as e:
        raise ApiError(422, "unknown_class", str(e)) from None
    image_id, emb = _embedding_for(request, body.image_id, body.image)
    h, w = emb.orig_hw
    with engine.model_lock:
        masks, scores = head.predict(engine.predictor(image_id, emb))
    out = [
        MaskOut(
            mask_id=uuid.uuid4().hex,
            score=float(scores[k]),
            rle=rle.encode(masks[k]),
            png=_png(masks[k]) if body.output == "png" else None,
            label=head.classes[k],
            **mask_stats(masks[k]),
        )
        for k in wanted
    ]
    return SegmentResponse(image_id=image_id, width=w, height=h, masks=out)


def detect(
    request: Request, images: list[np.ndarray], text: str, box_threshold: float, text_threshold: float
):
    """The server's detector on images (a 422 for a bad text, a 503 when the detector cannot load)."""
    from ...text import TextError, parse_phrases

    engine = request.app.state.engine
    try:
        phrases = parse_phrases(text)
    except TextError as e:
        raise ApiError(422, "invalid_text", str(e)) from None
    try:
        detector = engine.detector()
    except TextError as e:
        raise ApiError(503, "no_detector", str(e)) from None
    try:
        with engine.model_lock:
            return detector.detect(images, phrases, box_threshold, text_threshold)
    except TextError as e:
        raise ApiError(422, "invalid_text", str(e)) from None


def _text(request: Request, body: SegmentRequest) -> SegmentResponse:
    """A text prompt: the detector's boxes as one box prompt, a mask per box labelled with its phrase."""
    from ...text.predictor import masks_for_boxes

    engine = request.app.state.engine
    if body.points or body.box is not None or body.mask_from is not None:
        raise ApiError(422, "invalid_request", "text takes no points, box or mask_from")
    image_id, emb = _embedding_for(request, body.image_id, body.image)
    data = engine.uploads.get(image_id)
    if data is None:
        raise ApiError(404, "unknown_image", f"no image {image_id!r}; upload it with POST /v1/images")
    from .images import decode_image

    image = decode_image(data, request.app.state.config.max_pixels)
    d = detect(request, [image], body.text, body.box_threshold, body.text_threshold)[0]
    h, w = emb.orig_hw
    with engine.model_lock:
        masks, scores = masks_for_boxes(engine.predictor(image_id, emb), d.boxes, (h, w))
    out = [
        MaskOut(
            mask_id=uuid.uuid4().hex,
            score=float(s),
            rle=rle.encode(m),
            png=_png(m) if body.output == "png" else None,
            label=lab,
            box=[round(float(v), 2) for v in b],
            **mask_stats(m),
        )
        for m, s, lab, b in zip(masks, d.scores, d.labels, d.boxes)
    ]
    return SegmentResponse(image_id=image_id, width=w, height=h, masks=out)


@router.post("/v1/automatic", tags=["segment"])
def automatic(request: Request, body: AutomaticRequest) -> dict:
    """Automatic masks for an uploaded image, as COCO annotations with RLE segmentations.

    The generator encodes the image again (its crops need their own embeddings)."""
    engine = request.app.state.engine
    data = engine.uploads.get(body.image_id)
    if data is None:
        raise ApiError(404, "unknown_image", f"no image {body.image_id!r}; upload it with POST /v1/images")
    from .images import decode_image

    image = decode_image(data, request.app.state.config.max_pixels)
    gen = AutomaticMaskGenerator(
        engine.model, output_mode="coco_rle", **body.model_dump(exclude={"image_id"})
    )
    with engine.model_lock:
        anns = gen.generate(image)
    h, w = image.shape[:2]
    return coco.single_image(anns, body.image_id, w, h, f"samkit automatic masks ({engine.model.cfg.name})")
