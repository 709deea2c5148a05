"""Request prompts under the rules every entry point shares (:mod:`samkit.prompts`), as 422 errors."""

from __future__ import annotations

from ...prompts import Prompt, PromptError
from ..errors import ApiError


def request_prompt(points, labels, box) -> Prompt:
    """The request's clicks (labels default to 1) and box, validated."""
    try:
        return Prompt.from_fields(points or None, labels or None, box)
    except PromptError as e:
        raise ApiError(422, "invalid_request", str(e)) from None


def best_mask(engine, image_id: str, emb, prompt: Prompt, multimask: bool | None = None):
    """The highest-scoring mask (H, W bool) of ``prompt`` on a cached embedding, and its score (the
    tool integrations answer with one mask). ``multimask``: ask for three candidates (default: for a
    single click, as SAM's authors advise)."""
    import numpy as np

    with engine.model_lock:
        masks, scores, _ = engine.predictor(image_id, emb).predict(
            point_coords=prompt.point_coords,
            point_labels=prompt.point_labels,
            box=prompt.box,
            multimask_output=prompt.multimask if multimask is None else multimask,
        )
    k = int(np.argmax(scores))
    return masks[k] > 0, float(scores[k])


def check_bounds(prompt: Prompt, width: int, height: int) -> Prompt:
    """Points inside the image, a box overlapping it."""
    try:
        return prompt.check_bounds(width, height)
    except PromptError as e:
        raise ApiError(422, "invalid_request", str(e)) from None
