"""The Ray engine (``pip install 'samkit[ray]'``): the same job on a Ray cluster with Ray Data.

Pipeline: a dataset of image keys -> reader tasks (fetch + decode, any node) -> an actor pool whose
actors each hold one model (``num_gpus``/``num_cpus`` per actor, ``concurrency`` actors, ``batch_size``
images per call) -> results streamed back to the driver, which writes them into the output folder
with the same :class:`~samkit.batch.output.OutputDir` as the local engine. Result files are therefore
the same bytes whichever engine ran, and resuming works the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from .inputs import ImageRef, load
from .job import BatchSettings, ImageResult, Segmenter, dumps, error_text
from .output import BackgroundWriter
from .prompts import Prompt, parse_prompt


class RayUnavailable(RuntimeError):
    """Ray (with Ray Data) is not installed."""


@dataclass(frozen=True)
class RayOptions:
    """address: cluster to join (``auto``, ``ray://host:10001``; None starts/uses a local instance).
    num_cpus / num_gpus: resources per model actor. concurrency: number of model actors.
    batch_size: images per actor call. reader_cpus: CPUs per reader task."""

    address: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    concurrency: int = 1
    batch_size: int = 4
    reader_cpus: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if self.num_cpus < 0 or self.num_gpus < 0 or self.reader_cpus <= 0:
            raise ValueError("num_cpus/num_gpus must be >= 0 and reader_cpus > 0")


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayUnavailable("the Ray engine needs Ray Data: pip install 'samkit[ray]'") from None
    return ray


def _read_row(row: dict) -> dict:
    """Reader task: fetch and decode one image (failures travel as an error string)."""
    try:
        image = load(ImageRef(row["key"], row["uri"]))
        error = ""
    except Exception as e:
        image, error = np.zeros((1, 1, 3), np.uint8), error_text(e)
    return {"key": row["key"], "prompts": row["prompts"], "image": image, "error": error}


class _SegmentActor:
    """One model per actor, loaded once; called with batches of decoded images."""

    def __init__(self, settings: BatchSettings) -> None:
        from ..runtime import tune_allocator

        tune_allocator()
        self.segmenter = Segmenter(settings)

    def __call__(self, batch: dict) -> dict:
        items, results = [], {}
        for key, prompts, image, error in zip(batch["key"], batch["prompts"], batch["image"], batch["error"]):
            key = str(key)
            if error:
                results[key] = ImageResult(key, error=str(error))
                continue
            plist = [parse_prompt(p, key, 0)[1] for p in json.loads(prompts)] if prompts else None
            items.append((key, np.asarray(image), plist))
        for i in range(0, len(items), self.segmenter.batch_size):
            for r in self.segmenter.segment(items[i : i + self.segmenter.batch_size]):
                results[r.key] = r
        keys = [str(k) for k in batch["key"]]
        return {
            "key": keys,
            "doc": [dumps(results[k].doc) if results[k].ok else "" for k in keys],
            "error": [results[k].error or "" for k in keys],
            "seconds": [float(results[k].seconds) for k in keys],
        }


def run_ray(
    todo: Iterable[ImageRef],
    settings: BatchSettings,
    writer: BackgroundWriter,
    prompts: dict[str, list[Prompt]] | None = None,
    options: RayOptions | None = None,
    on_result: Callable[[ImageResult], None] | None = None,
) -> None:
    """Process ``todo`` on Ray; results are handed to ``writer`` on the driver as they stream in."""
    ray = _import_ray()
    options = options or RayOptions()
    todo = list(todo)
    if not todo:
        return
    started = False
    if not ray.is_initialized():
        ray.init(address=options.address, log_to_driver=False, logging_level=logging.WARNING)
        started = True
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar of its own over written results
    try:
        rows = [
            {
                "key": r.key,
                "uri": r.uri,
                "prompts": json.dumps([{"image": r.key, **p.as_dict()} for p in prompts[r.key]])
                if prompts and r.key in prompts
                else "",
            }
            for r in todo
        ]
        refs = {r.key: r for r in todo}
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), 200))
        ds = ds.map(_read_row, num_cpus=options.reader_cpus)
        ds = ds.map_batches(
            _SegmentActor,
            fn_constructor_kwargs={"settings": settings},
            batch_size=options.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.concurrency),
            num_cpus=options.num_cpus,
            num_gpus=options.num_gpus,
        )
        for row in ds.iter_rows():
            key = str(row["key"])
            if row["error"]:
                result = ImageResult(key, error=str(row["error"]), seconds=float(row["seconds"]))
            else:
                result = ImageResult(key, doc=json.loads(row["doc"]), seconds=float(row["seconds"]))
            image = None
            if settings.overlay and result.ok:
                image = load(refs[key])  # overlays need the pixels, which stay on the workers
            writer.put(result, image)
            if on_result is not None:
                on_result(result)
    finally:
        if started:
            ray.shutdown()
