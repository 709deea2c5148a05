"""What every evaluation report records (model, checkpoint hash, settings, samkit version) and the
side-by-side table of several runs."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._files import atomic_write, file_sha256

__all__ = ["RunInfo", "file_sha256", "table", "write_json"]


@dataclass
class RunInfo:
    """One model and setting under evaluation."""

    model: str
    checkpoint: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    label: str = ""

    def describe(self) -> dict[str, Any]:
        from .. import __version__

        ckpt = self.checkpoint
        return {
            "label": self.label or self.model,
            "model": self.model,
            "checkpoint": ckpt,
            "checkpoint_sha256": file_sha256(ckpt) if ckpt and Path(ckpt).is_file() else None,
            "settings": dict(self.settings),
            "samkit": __version__,
        }


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain text table: the first column left-aligned, the rest right-aligned; floats to 2 places."""

    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths)))

    return "\n".join([line(list(headers)), line(["-" * w for w in widths])] + [line(r) for r in cells])


def write_json(path: str | os.PathLike, doc: Any) -> Path:
    """``doc`` as indented JSON, written atomically (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(doc, indent=2) + "\n"))
