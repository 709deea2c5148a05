"""The prompt file of a batch job: JSON lines, one object per line.

``{"image": "sub/photo.jpg", "points": [[x, y], ...], "labels": [1, ...], "box": [x0, y0, x1, y1]}``

``image`` is the image's key (its path relative to the job's source); points and/or box are in
pixels of the original image; labels default to 1 (foreground) for every point. Several lines may name
the same image: each is one object and gives one mask. The whole file is checked before the job starts,
so a typo on line 90 000 fails in a second, not after hours.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

from .inputs import normalize_key


class PromptFileError(ValueError):
    """A line of the prompt file is not a valid prompt (the message names file and line)."""


@dataclass(frozen=True)
class Prompt:
    """One object's prompt on one image (pixels of the original image)."""

    points: tuple[tuple[float, float], ...] | None
    labels: tuple[int, ...] | None
    box: tuple[float, float, float, float] | None
    line: int

    @property
    def multimask(self) -> bool:
        """One click is ambiguous: ask for three candidates and keep the best (as the SAM authors advise)."""
        return self.box is None and self.points is not None and len(self.points) == 1

    def as_dict(self) -> dict:
        d: dict = {}
        if self.points is not None:
            d["points"] = [list(p) for p in self.points]
            d["labels"] = list(self.labels)
        if self.box is not None:
            d["box"] = list(self.box)
        return d


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def parse_prompt(obj, where: str, line: int) -> tuple[str, Prompt]:
    """Validate one decoded JSON line; returns (image key, prompt)."""
    if not isinstance(obj, dict):
        raise PromptFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - {"image", "points", "labels", "box"}
    if unknown:
        raise PromptFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        raise PromptFileError(f"{where}: 'image' must be the image's path relative to the input folder")
    points = obj.get("points")
    labels = obj.get("labels")
    box = obj.get("box")
    if points is None and box is None:
        raise PromptFileError(f"{where}: give 'points' and/or 'box'")
    pts = None
    if points is not None:
        if (
            not isinstance(points, list)
            or not points
            or not all(isinstance(p, list) and len(p) == 2 and all(map(_finite, p)) for p in points)
        ):
            raise PromptFileError(f"{where}: 'points' must be a non-empty list of [x, y] numbers")
        pts = tuple((float(x), float(y)) for x, y in points)
        if labels is None:
            labels = [1] * len(pts)
        if not isinstance(labels, list) or len(labels) != len(pts):
            raise PromptFileError(f"{where}: 'labels' must be a list with one label per point")
        if not all(lab in (0, 1) and not isinstance(lab, float) for lab in labels):
            raise PromptFileError(f"{where}: labels must be 1 (object) or 0 (background), got {labels}")
        labels = tuple(int(v) for v in labels)
    elif labels is not None:
        raise PromptFileError(f"{where}: 'labels' without 'points'")
    bx = None
    if box is not None:
        if not isinstance(box, list) or len(box) != 4 or not all(map(_finite, box)):
            raise PromptFileError(f"{where}: 'box' must be [x0, y0, x1, y1] numbers")
        if box[2] <= box[0] or box[3] <= box[1]:
            raise PromptFileError(f"{where}: 'box' needs x1 > x0 and y1 > y0, got {box}")
        bx = tuple(float(v) for v in box)
    return normalize_key(image), Prompt(pts, labels, bx, line)


def load_prompts(path: str | Path) -> dict[str, list[Prompt]]:
    """Read a JSON-lines prompt file into {image key: [prompts in file order]}."""
    path = Path(path)
    if not path.is_file():
        raise PromptFileError(f"prompt file not found: {path}")
    out: dict[str, list[Prompt]] = {}
    with open(path, encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            where = f"{path}:{n}"
            try:
                obj = json.loads(raw)
            except json.JSONDecodeError as e:
                raise PromptFileError(f"{where}: not valid JSON ({e.msg})") from None
            key, prompt = parse_prompt(obj, where, n)
            out.setdefault(key, []).append(prompt)
    if not out:
        raise PromptFileError(f"{path} holds no prompts")
    return out


def file_digest(path: str | Path) -> str:
    """sha256 of a file, to recognise a rerun with the same prompts."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
