"""Batch segmentation of many images: ``samkit batch`` and :func:`run_batch`.

The job: find the images (:mod:`.inputs`), read the prompts (:mod:`.prompts`) or generate automatic
masks, skip what the output folder already holds (:mod:`.output`), run the rest on the local engine
(:mod:`.local`) or on Ray (:mod:`.ray_engine`), and optionally gather a COCO dataset file.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from .inputs import IMAGE_EXTENSIONS, ImageRef, InputError, find_images
from .job import AUTO_ARGS, BatchSettings, ImageResult, Segmenter
from .output import OutputDir, OutputError
from .prompts import Prompt, PromptFileError, file_digest, load_prompts
from .ray_engine import RayOptions, RayUnavailable

__all__ = [
    "AUTO_ARGS",
    "BatchInterrupted",
    "BatchSettings",
    "BatchSummary",
    "ImageRef",
    "ImageResult",
    "InputError",
    "OutputError",
    "Prompt",
    "PromptFileError",
    "RayOptions",
    "RayUnavailable",
    "Segmenter",
    "find_images",
    "load_prompts",
    "run_batch",
]


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a job; the results written so far are complete and a rerun continues."""

    def __init__(self, summary: BatchSummary) -> None:
        super().__init__(f"interrupted after {summary.ok + summary.failed} of {summary.todo} images")
        self.summary = summary


@dataclass
class BatchSummary:
    """What a run did. ``todo`` images were processed this time (``skipped`` were already done)."""

    images: int = 0
    skipped: int = 0
    todo: int = 0
    ok: int = 0
    failed: int = 0
    masks: int = 0
    seconds: float = 0.0
    unmatched_prompts: list[str] = field(default_factory=list)
    no_prompts: int = 0
    coco: dict | None = None
    interrupted: bool = False

    @property
    def images_per_second(self) -> float:
        """Images segmented per second (failures, which may never reach the model, do not count)."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0


def run_batch(
    sources: str | os.PathLike | list,
    out: str | os.PathLike,
    settings: BatchSettings,
    prompts: str | os.PathLike | None = None,
    engine: str = "local",
    workers: int = 2,
    processes: int | None = None,
    ray: RayOptions | None = None,
    coco: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    extensions: tuple[str, ...] = IMAGE_EXTENSIONS,
    model=None,
    log=None,
) -> BatchSummary:
    """Segment every image of ``sources`` into the folder ``out``.

    Args:
        sources: folder(s), glob(s), list file(s) or fsspec URL(s) (see :func:`find_images`).
        settings: model and mode (``"prompts"`` needs ``prompts``, a JSON-lines file).
        engine: ``"local"`` (threads on this machine) or ``"ray"`` (Ray Data, see ``ray``).
        workers: reader threads of the local engine (with one process).
        processes: worker processes of the local engine, each with its own model (default: 1 when
            ``model`` is given, else 2 on a multi-core CPU and 1 on an accelerator).
        coco: also write one COCO dataset file of every finished image of the job.
        overwrite: start afresh in an ``out`` that holds another job's results.
        model: an already loaded SAM2Model for the local engine (default: load from settings).
        log: where to print notes (default stderr); progress goes through tqdm.

    Raises BatchInterrupted on Ctrl-C (after writing every finished result).
    """
    log = log or (lambda msg: print(msg, file=sys.stderr))
    if engine not in ("local", "ray"):
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if settings.mode == "prompts" and prompts is None:
        raise ValueError(
            "prompted mode needs a prompt file (--prompts FILE), or use automatic masks (--auto)"
        )
    if settings.mode != "prompts" and prompts is not None:
        what = {"auto": "automatic masks", "head": "a prompt-free head", "text": "a text prompt"}[
            settings.mode
        ]
        raise ValueError(f"give either a prompt file or {what}, not both")
    refs = find_images(sources, extensions)
    # an output folder inside the input folder must not feed its own PNGs back in on a rerun
    out_dir = os.path.realpath(out)
    refs = [
        r for r in refs if "://" in r.uri or os.path.commonpath([os.path.realpath(r.uri), out_dir]) != out_dir
    ]
    if not refs:
        raise InputError(f"no images found outside the output folder {out}")
    prompt_map = load_prompts(prompts) if prompts is not None else None
    identity = settings.identity()
    if prompts is not None:
        identity["prompts_sha256"] = file_digest(prompts)

    summary = BatchSummary(images=len(refs))
    keys = {r.key for r in refs}
    if prompt_map is not None:
        summary.unmatched_prompts = sorted(set(prompt_map) - keys)
        if summary.unmatched_prompts:
            shown = ", ".join(summary.unmatched_prompts[:5])
            more = len(summary.unmatched_prompts) - 5
            log(
                f"note: {len(summary.unmatched_prompts)} image(s) in {prompts} are not among the inputs: "
                f"{shown}{f' and {more} more' if more > 0 else ''}"
            )
    output = OutputDir(out, identity, overwrite=overwrite, png=settings.png, overlay=settings.overlay)
    try:
        done = output.done_keys()
        todo = [r for r in refs if r.key not in done]
        summary.skipped = len(refs) - len(todo)
        summary.todo = len(todo)
        if summary.skipped:
            log(f"{summary.skipped} of {len(refs)} images already done in {out}; continuing with {len(todo)}")
        if processes is None:
            from .local import default_processes

            processes = 1 if model is not None else default_processes(settings.device)
        if processes < 1:
            raise ValueError(f"processes must be >= 1, got {processes}")
        if processes > 1:
            model = None  # every worker process loads its own
        _run(output, todo, settings, prompt_map, engine, workers, processes, ray, progress, model, summary)
        if summary.no_prompts:
            log(f"note: {summary.no_prompts} image(s) have no prompts in {prompts}; recorded as failed")
        if coco is not None:
            done_now = output.done_keys() & keys
            summary.coco = output.write_coco(coco, sorted(done_now))
    finally:
        output.close()
    return summary


def _run(
    output, todo, settings, prompt_map, engine, workers, processes, ray_opts, progress, model, summary
) -> None:
    from tqdm import tqdm

    from .output import BackgroundWriter

    bar = tqdm(total=len(todo), unit="img", disable=not progress, dynamic_ncols=True, desc="samkit batch")

    def on_written(r: ImageResult) -> None:
        summary.ok += r.ok
        summary.failed += not r.ok
        summary.masks += r.num_masks
        bar.update(1)
        bar.set_postfix(ok=summary.ok, failed=summary.failed, refresh=False)

    writer = BackgroundWriter(output, on_written=on_written)
    t0 = time.perf_counter()
    interrupted = False
    try:
        if prompt_map is not None:
            # an image without prompts fails at once, without being read
            missing = [r for r in todo if r.key not in prompt_map]
            for r in missing:
                writer.put(ImageResult(r.key, error="no prompts for this image in the prompt file"))
            summary.no_prompts = len(missing)
            todo = [r for r in todo if r.key in prompt_map]
        if todo and engine == "local":
            from .local import run_local

            run_local(todo, settings, writer, prompt_map, workers=workers, processes=processes, model=model)
        elif todo:
            from .ray_engine import run_ray

            run_ray(todo, settings, writer, prompt_map, ray_opts)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        writer.close()  # writes every finished result, also after Ctrl-C
        bar.close()
        summary.seconds = time.perf_counter() - t0
    if interrupted:
        summary.interrupted = True
        raise BatchInterrupted(summary)
