"""The output folder of a batch job, written so that nothing is ever half there.

Layout::

    out/job.json                 the settings that decide the results (a rerun must match them)
    out/manifest.jsonl           one line per processed image, append-only, fsynced
    out/results/<key>.json       masks of one image (COCO RLE); deterministic content only
    out/masks/<key>/<i>.png      with --png: each mask as an 8-bit PNG
    out/overlays/<key>.png       with --overlay: the image with its masks drawn

Every file is written to a temporary name and renamed into place; the image's manifest line is
appended (and fsynced) only after its files exist. So after a crash or Ctrl-C, an image is done
exactly when the manifest says ``ok`` and its result file is there, and a rerun skips exactly those.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import threading
from pathlib import Path

import numpy as np

from .. import coco, rle
from .._files import atomic_write
from .job import ImageResult, dumps

MANIFEST = "manifest.jsonl"
JOB_FILE = "job.json"
RESULTS_DIR = "results"


class OutputError(RuntimeError):
    """The output folder cannot be used for this job (it holds another job's results, ...)."""


def result_path(root: Path, key: str) -> Path:
    return root / RESULTS_DIR / f"{key}.json"


class OutputDir:
    """Reads what an output folder already holds and writes new results into it.

    Args:
        root: the folder (created if missing).
        identity: the job's :meth:`BatchSettings.identity` (plus the prompt file's digest); a folder
            that holds results of different settings is refused unless ``overwrite``.
        overwrite: remove samkit's files from an earlier job in this folder and start afresh.
        png / overlay: also write each mask as PNG / the image with its masks drawn.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        identity: dict,
        overwrite: bool = False,
        png: bool = False,
        overlay: bool = False,
    ) -> None:
        self.root = Path(root)
        self.png = png
        self.overlay = overlay
        self.root.mkdir(parents=True, exist_ok=True)
        self._remove_temp_files()
        job_file = self.root / JOB_FILE
        if overwrite:
            for name in (RESULTS_DIR, "masks", "overlays"):
                shutil.rmtree(self.root / name, ignore_errors=True)
            for name in (MANIFEST, JOB_FILE):
                (self.root / name).unlink(missing_ok=True)
        elif job_file.exists():
            try:
                old = json.loads(job_file.read_text())
            except (OSError, ValueError):
                old = None
            if old != identity:
                diff = sorted(
                    k for k in set(identity) | set(old or {}) if (old or {}).get(k) != identity.get(k)
                )
                raise OutputError(
                    f"{self.root} holds results of a different job (differs in: {', '.join(diff)}); "
                    "use another --out, or --overwrite to start afresh"
                )
        atomic_write(job_file, lambda p: p.write_text(json.dumps(identity, indent=2, sort_keys=True)))
        self._manifest = open(self.root / MANIFEST, "ab")
        self._fix_torn_tail()

    # --- reading --------------------------------------------------------------------------------

    def _remove_temp_files(self) -> None:
        # a process killed mid-write leaves '.name.pid.tid.tmp' files: never results, always safe to drop
        for p in self.root.rglob(".*.tmp"):
            p.unlink(missing_ok=True)

    def _fix_torn_tail(self) -> None:
        # a kill during an append can leave a last line without its newline: end it, so the next
        # record starts on a line of its own (the torn line is ignored by read_manifest)
        path = self.root / MANIFEST
        size = path.stat().st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":
                    self._append(b"\n")

    def read_manifest(self) -> list[dict]:
        """Every well-formed manifest record, oldest first (a torn last line is skipped)."""
        records = []
        path = self.root / MANIFEST
        if not path.exists():
            return records
        with open(path, encoding="utf-8") as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict) and "image" in rec:
                    records.append(rec)
        return records

    def done_keys(self) -> set[str]:
        """Images whose latest record is ``ok`` and whose result file exists."""
        latest = {r["image"]: r for r in self.read_manifest()}
        return {
            k for k, r in latest.items() if r.get("status") == "ok" and result_path(self.root, k).is_file()
        }

    # --- writing --------------------------------------------------------------------------------

    def _append(self, data: bytes) -> None:
        self._manifest.write(data)
        self._manifest.flush()
        os.fsync(self._manifest.fileno())

    def write(self, result: ImageResult, image: np.ndarray | None = None) -> None:
        """Write one image's files (atomically), then its manifest line."""
        record = {
            "image": result.key,
            "status": "ok" if result.ok else "failed",
            "masks": result.num_masks,
            "seconds": round(result.seconds, 4),
            "error": result.error,
        }
        if result.ok:
            anns = result.doc["annotations"]
            if self.png or self.overlay:
                masks = [rle.decode(a["segmentation"]) for a in anns]
                if self.png:
                    self._write_pngs(result.key, masks)
                if self.overlay and image is not None:
                    self._write_overlay(result.key, image, masks, [a.get("prompt") for a in anns])
            path = result_path(self.root, result.key)
            path.parent.mkdir(parents=True, exist_ok=True)
            text = dumps(result.doc)
            atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))
            record["result"] = path.relative_to(self.root).as_posix()
        self._append((json.dumps(record) + "\n").encode("utf-8"))

    def _write_pngs(self, key: str, masks: list[np.ndarray]) -> None:
        from ..visualize import mask_to_png

        folder = self.root / "masks" / key
        folder.mkdir(parents=True, exist_ok=True)
        for i, m in enumerate(masks):
            atomic_write(folder / f"{i}.png", lambda p, m=m: mask_to_png(m).save(p, format="PNG"))

    def _write_overlay(
        self, key: str, image: np.ndarray, masks: list[np.ndarray], prompts: list[dict | None]
    ) -> None:
        """The image with its masks (small ones on top) and, in prompted mode, the clicks and boxes."""
        from ..visualize import overlay_masks

        path = self.root / "overlays" / f"{key}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        order = sorted(range(len(masks)), key=lambda i: -int(masks[i].sum()))
        given = [p for p in prompts if p]
        points = [pt for p in given for pt in p.get("points", [])]
        labels = [lab for p in given for lab in p.get("labels", [])]
        boxes = [p["box"] for p in given if "box" in p]
        atomic_write(
            path,
            lambda p: overlay_masks(
                image, [masks[i] for i in order], alpha=0.45, points=points, labels=labels, boxes=boxes
            ).save(p, format="PNG"),
        )

    def close(self) -> None:
        if not self._manifest.closed:
            self._manifest.close()

    # --- the COCO dataset -----------------------------------------------------------------------

    def write_coco(self, path: str | os.PathLike, keys: list[str] | None = None) -> dict:
        """One COCO dataset file from the results of ``keys`` (default: every done image), images in key
        order; returns counts."""
        keys = sorted(self.done_keys() if keys is None else keys)
        docs = [(key, json.loads(result_path(self.root, key).read_text(encoding="utf-8"))) for key in keys]
        # a prompt-free head's classes: its annotations name them (category_id = position + 1)
        named = {  # only annotations that say both (a prompt file's text lines name no category id)
            a["category_id"]: a["category"]
            for _, d in docs
            for a in d["annotations"]
            if "category" in a and "category_id" in a
        }
        categories = [named.get(i, f"class {i}") for i in range(1, max(named) + 1)] if named else None
        doc = coco.dataset(
            (
                (
                    {"file_name": key, "width": d["width"], "height": d["height"]},
                    [{k: v for k, v in a.items() if k != "category"} for a in d["annotations"]],
                )
                for key, d in docs
            ),
            "samkit batch results",
            categories,
        )
        out = Path(path)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda p: p.write_text(json.dumps(doc), encoding="utf-8"))
        return {"images": len(doc["images"]), "annotations": len(doc["annotations"])}


class BackgroundWriter:
    """Writes results on a thread of its own so that PNG/JSON encoding and fsyncs overlap the model.

    ``put`` blocks when ``maxsize`` results wait (bounded memory); ``close`` writes what is queued
    and re-raises an error the thread met (a full disk, say) instead of losing it.
    """

    def __init__(self, out: OutputDir, maxsize: int = 8, on_written=None) -> None:
        self.out = out
        self.on_written = on_written
        self._q: queue.Queue = queue.Queue(maxsize=maxsize)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="samkit-batch-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            if self._error is not None:
                continue  # drain without writing after a failure
            result, image = item
            try:
                self.out.write(result, image)
                if self.on_written is not None:
                    self.on_written(result)
            except BaseException as e:  # surfaced to the caller by put/close
                self._error = e

    def _check(self) -> None:
        if self._error is not None:
            raise self._error

    def put(self, result: ImageResult, image: np.ndarray | None = None) -> None:
        self._check()
        self._q.put((result, image))

    def close(self) -> None:
        self._q.put(None)
        self._thread.join()
        self._check()
