"""The prompt file of a batch job: JSON lines, one object per line.

``{"image": "sub/photo.jpg", "points": [[x, y], ...], "labels": [1, ...], "box": [x0, y0, x1, y1]}``
or ``{"image": "sub/photo.jpg", "text": "truck . person"}`` (every object the words name; needs
``samkit[text]``)

``image`` is the image's key (its path relative to the job's source); points and/or box are in
pixels of the original image; labels default to 1 (foreground) for every point. Several lines may name
the same image: each is one object and gives one mask. The whole file is checked before the job starts,
so a typo on line 90 000 fails in a second, not after hours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .. import prompts as P
from .._files import file_sha256
from .inputs import normalize_key


class PromptFileError(P.PromptError):
    """A line of the prompt file is not a valid prompt (the message names file and line)."""


@dataclass(frozen=True)
class Prompt(P.Prompt):
    """One object's prompt on one image (:class:`samkit.prompts.Prompt`) and its line in the file."""

    line: int = 0
    text: str | None = None

    def as_dict(self) -> dict:
        return {"text": self.text} if self.text is not None else super().as_dict()

    def check_bounds(self, width: int, height: int, where: str = "") -> Prompt:
        return super().check_bounds(width, height, where or f"prompt line {self.line}")


def parse_prompt(obj, where: str, line: int) -> tuple[str, Prompt]:
    """Validate one decoded JSON line with the rules every entry point shares (:mod:`samkit.prompts`);
    returns (image key, prompt)."""
    if not isinstance(obj, dict):
        raise PromptFileError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    unknown = set(obj) - {"image", "points", "labels", "box", "text"}
    if unknown:
        raise PromptFileError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
    image = obj.get("image")
    if not isinstance(image, str) or not image.strip():
        raise PromptFileError(f"{where}: 'image' must be the image's path relative to the input folder")
    if "text" in obj:
        if any(obj.get(k) is not None for k in ("points", "labels", "box")):
            raise PromptFileError(
                f"{where}: 'text' is a prompt of its own: no 'points', 'labels' or 'box' with it"
            )
        from ..text.detector import TextError, parse_phrases

        try:
            parse_phrases(obj["text"])
        except TextError as e:
            raise PromptFileError(f"{where}: {e}") from None
        return normalize_key(image), Prompt(line=line, text=obj["text"])
    if obj.get("labels") is not None and obj.get("points") is None:
        raise PromptFileError(f"{where}: 'labels' without 'points'")
    try:
        p = P.Prompt.from_fields(obj.get("points"), obj.get("labels"), obj.get("box"), where=where)
    except P.PromptError as e:
        raise PromptFileError(str(e)) from None
    return normalize_key(image), Prompt(p.points, p.labels, p.box, line)


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
    return file_sha256(path)
