"""Prompts: one type and one set of rules for every entry point.

A :class:`Prompt` is one object's clicks and/or box in pixels of the original image. The batch prompt
file, ``samkit segment`` and ``samkit track``, and the server's image and video routes all build it
the same way, so the same mistake gets the same message everywhere:

- a point is ``[x, y]`` (finite numbers); its label is 1 (object) or 0 (background) and defaults to 1;
- a box is ``[x0, y0, x1, y1]`` with ``x1 > x0`` and ``y1 > y0``;
- points must lie inside the image (``0 <= x < width``, ``0 <= y < height``) and a box must overlap it
  (:meth:`Prompt.check_bounds`; checked where the image's size is known).

The predictors' Python methods keep the reference's conventions (labels are required with points, and
the model's internal labels -1, 2 and 3 are accepted); :func:`point_tensors` and :func:`box_tensor`
validate their arrays, with the same messages in the image and the video predictor.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where arrays are checked: the CLI parses prompts without it
    import torch

__all__ = [
    "MODEL_LABELS",
    "Prompt",
    "PromptError",
    "as_float_tensor",
    "box_tensor",
    "parse_box",
    "parse_frame_prompt",
    "parse_point",
    "point_tensors",
]

# labels a user gives: 1 object, 0 background
USER_LABELS = (0, 1)
# labels the model knows: also -1 (padding), 2 and 3 (a box's corners), as the reference accepts them
MODEL_LABELS = (-1, 0, 1, 2, 3)


class PromptError(ValueError):
    """A prompt is malformed or does not fit its image; the message says what and where."""


def _finite(v) -> bool:
    return (
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and math.isfinite(v)
    )


def _at(where: str) -> str:
    return f"{where}: " if where else ""


@dataclass(frozen=True)
class Prompt:
    """One object's prompt on one image: clicks (x, y) with labels, and/or a box, in pixels."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None

    @classmethod
    def from_fields(cls, points=None, labels=None, box=None, where: str = "") -> Prompt:
        """From JSON-like fields (a batch prompt line, a server request): ``points`` [[x, y], ...],
        ``labels`` [1 or 0, ...] (default: 1 for every point), ``box`` [x0, y0, x1, y1]."""
        at = _at(where)
        if points is not None and not isinstance(points, (list, tuple)):
            raise PromptError(f"{at}'points' must be a list of [x, y] numbers")
        pts = list(points) if points else []
        if not pts and box is None:
            raise PromptError(f"{at}give 'points' and/or 'box'")
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 and all(map(_finite, p)) for p in pts):
            raise PromptError(f"{at}'points' must be a list of [x, y] numbers")
        if labels is None or (len(labels) == 0 and pts):
            labels = [1] * len(pts)
        if not isinstance(labels, (list, tuple)) or len(labels) != len(pts):
            n = len(labels) if isinstance(labels, (list, tuple)) else labels
            raise PromptError(f"{at}{len(pts)} points but {n} labels: give one label per point (or none)")
        if not all(not isinstance(v, (bool, float)) and v in USER_LABELS for v in labels):
            raise PromptError(f"{at}labels must be 1 (object) or 0 (background), got {list(labels)}")
        bx = None
        if box is not None:
            if not isinstance(box, (list, tuple)) or len(box) != 4 or not all(map(_finite, box)):
                raise PromptError(f"{at}'box' must be [x0, y0, x1, y1] numbers")
            if box[2] <= box[0] or box[3] <= box[1]:
                raise PromptError(f"{at}'box' needs x1 > x0 and y1 > y0, got {list(box)}")
            bx = tuple(float(v) for v in box)
        return cls(tuple((float(x), float(y)) for x, y in pts), tuple(int(v) for v in labels), bx)

    @classmethod
    def from_cli(cls, points: list[str] | None = None, box: str | None = None) -> Prompt:
        """From command-line text: points ``X,Y`` or ``X,Y:LABEL``, a box ``X0,Y0,X1,Y1``."""
        parsed = [parse_point(p) for p in points or []]
        return cls.from_fields(
            [[x, y] for x, y, _ in parsed] or None,
            [lab for _, _, lab in parsed] or None,
            None if box is None else list(parse_box(box)),
        )

    @property
    def multimask(self) -> bool:
        """One click is ambiguous: ask for three candidates and keep the best (as SAM's authors advise)."""
        return self.box is None and len(self.points) == 1

    @property
    def point_coords(self) -> list[list[float]] | None:
        return [list(p) for p in self.points] or None

    @property
    def point_labels(self) -> list[int] | None:
        return list(self.labels) or None

    def merged(self, other: Prompt, where: str = "") -> Prompt:
        """This prompt's clicks followed by ``other``'s, and the box of either (two boxes: an error)."""
        if self.box is not None and other.box is not None:
            raise PromptError(f"{_at(where)}two boxes for one object")
        return Prompt(self.points + other.points, self.labels + other.labels, self.box or other.box)

    def check_bounds(self, width: int, height: int, where: str = "") -> Prompt:
        """Refuse points outside the ``width`` x ``height`` image and boxes that miss it. Returns self."""
        for x, y in self.points:
            if not (0 <= x < width and 0 <= y < height):
                raise PromptError(f"{_at(where)}point {x:g},{y:g} lies outside the {width}x{height} image")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
                raise PromptError(
                    f"{_at(where)}box {x0:g},{y0:g},{x1:g},{y1:g} lies outside the {width}x{height} image"
                )
        return self

    def as_dict(self) -> dict:
        d: dict = {}
        if self.points:
            d["points"] = [list(p) for p in self.points]
            d["labels"] = list(self.labels)
        if self.box is not None:
            d["box"] = list(self.box)
        return d


# --- command-line text -------------------------------------------------------------------------


def parse_point(text: str) -> tuple[float, float, int]:
    """``X,Y`` (label 1) or ``X,Y:LABEL`` with LABEL 1 (object) or 0 (background)."""
    coords, _, label = text.strip().partition(":")
    parts = coords.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = (float(p) for p in parts)
        lab = int(label) if label else 1
    except ValueError:
        raise PromptError(f"point must look like X,Y or X,Y:LABEL (e.g. 500,375:1), got {text!r}") from None
    if lab not in USER_LABELS:
        raise PromptError(f"point label must be 1 (object) or 0 (background), got {lab}")
    if not (math.isfinite(x) and math.isfinite(y)):
        raise PromptError(f"point coordinates must be finite, got {text!r}")
    return x, y, lab


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``X0,Y0,X1,Y1`` with X1 > X0 and Y1 > Y0."""
    parts = text.strip().split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        box = tuple(float(p) for p in parts)
    except ValueError:
        raise PromptError(f"box must be 4 numbers X0,Y0,X1,Y1, got {text!r}") from None
    if not all(math.isfinite(v) for v in box):
        raise PromptError(f"box coordinates must be finite, got {text!r}")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise PromptError(f"box must have X1 > X0 and Y1 > Y0, got {text!r}")
    return box  # type: ignore[return-value]


_FRAME_PROMPT = re.compile(r"^(\d+):([^:]+):(.+)$")


def parse_frame_prompt(text: str) -> tuple[int, int | str, Prompt]:
    """A video prompt: ``FRAME:OBJ:X,Y[:LABEL]`` (a click) or ``FRAME:OBJ:box=X0,Y0,X1,Y1``.
    Returns (frame, object id: an int when it is digits, else the text, prompt)."""
    m = _FRAME_PROMPT.match(text.strip())
    if not m:
        raise PromptError(
            f"prompt must look like FRAME:OBJ:X,Y[:LABEL] or FRAME:OBJ:box=X0,Y0,X1,Y1, got {text!r}"
        )
    frame, obj, rest = int(m.group(1)), m.group(2), m.group(3)
    obj_id: int | str = int(obj) if obj.isdigit() else obj
    try:
        prompt = Prompt.from_cli(box=rest[4:]) if rest.startswith("box=") else Prompt.from_cli([rest])
    except PromptError as e:
        raise PromptError(f"bad prompt {text!r}: {e}") from None
    return frame, obj_id, prompt


# --- arrays, for the predictors' Python methods ------------------------------------------------


def as_float_tensor(value, name: str) -> torch.Tensor:
    """``value`` as a float32 tensor where it is (numpy and lists: on the CPU), checked finite there:
    checking a GPU tensor waits for the GPU, which a click's few numbers need not do."""
    import torch

    try:
        t = torch.as_tensor(
            np.asarray(value, dtype=np.float32) if not isinstance(value, torch.Tensor) else value
        )
    except (TypeError, ValueError) as e:
        raise PromptError(f"{name} must be numeric, got {value!r:.80}") from e
    t = t.to(dtype=torch.float32)
    if not torch.isfinite(t).all():
        raise PromptError(f"{name} contains NaN or infinite values")
    return t


def point_tensors(
    points, labels, points_name: str = "point_coords", labels_name: str = "point_labels", batched: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate clicks given to a predictor: points (N, 2) (or (B, N, 2) when ``batched``) and one label
    per point from :data:`MODEL_LABELS`. Returns float32 points and int32 labels, as given (no batch
    axis added)."""
    import torch

    pts = as_float_tensor(points, points_name)
    ndims = (2, 3) if batched else (2,)
    if pts.ndim not in ndims or pts.shape[-1] != 2:
        shapes = "(N, 2) or (B, N, 2)" if batched else "(N, 2)"
        raise PromptError(f"{points_name} must have shape {shapes}, got {tuple(pts.shape)}")
    lab = as_float_tensor(labels, labels_name)
    if tuple(lab.shape) != tuple(pts.shape[:-1]):
        raise PromptError(
            f"{labels_name} shape {tuple(lab.shape)} does not match {points_name} shape {tuple(pts.shape)}; "
            "expected one label per point"
        )
    valid = torch.tensor(MODEL_LABELS, device=lab.device, dtype=lab.dtype)
    if (lab != lab.round()).any() or not torch.isin(lab, valid).all():
        raise PromptError(f"{labels_name} must be 1 (foreground) or 0 (background) (or -1, 2, 3)")
    return pts, lab.to(torch.int32)


def box_tensor(box, name: str = "box", batched: bool = True) -> torch.Tensor:
    """Validate a box given to a predictor: 4 numbers (x0, y0, x1, y1), or (B, 4) when ``batched``.
    Returns (B, 4) float32."""
    b = as_float_tensor(box, name)
    if not batched:
        if b.numel() != 4:
            raise PromptError(f"{name} must be 4 numbers (x0, y0, x1, y1), got shape {tuple(b.shape)}")
        return b.reshape(1, 4)
    if b.ndim == 1:
        b = b[None]
    if b.ndim != 2 or b.shape[-1] != 4:
        raise PromptError(
            f"{name} must be 4 numbers (x0, y0, x1, y1) or an (N, 4) array, got shape {tuple(b.shape)}"
        )
    return b
