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


def check_bounds(prompt: Prompt, width: int, height: int) -> Prompt:
    """Points inside the image, a box overlapping it."""
    try:
        return prompt.check_bounds(width, height)
    except PromptError as e:
        raise ApiError(422, "invalid_request", str(e)) from None
