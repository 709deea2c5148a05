"""The local engine: reader threads decode and preprocess images ahead of the model, the main thread
encodes them in batches and decodes prompts, a writer thread writes results. I/O, JPEG decoding and
resizing overlap the network; torch uses every core for the network itself."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor

from .inputs import ImageRef, load
from .job import ImageResult, Segmenter, error_text
from .output import BackgroundWriter
from .prompts import Prompt


def run_local(
    todo: Iterable[ImageRef],
    segmenter: Segmenter,
    writer: BackgroundWriter,
    prompts: dict[str, list[Prompt]] | None = None,
    workers: int = 2,
    keep_images: bool = False,
    on_result: Callable[[ImageResult], None] | None = None,
) -> None:
    """Process ``todo`` in order, handing every result to ``writer``.

    Args:
        workers: reader threads (decode + preprocess); they run ahead by a bounded number of images.
        keep_images: pass the decoded image along with its result (the writer draws overlays with it).
    """
    todo = list(todo)
    prompts = prompts or {}
    bs = max(1, segmenter.batch_size)
    lookahead = bs + 2 * max(1, workers)  # bounded: at most this many decoded images wait in memory

    def read(ref: ImageRef):
        t = time.perf_counter()
        image = load(ref)
        return image, segmenter.preprocess(image), time.perf_counter() - t

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="samkit-batch-reader")
    pending: deque[tuple[ImageRef, Future]] = deque()
    feed = iter(todo)

    def top_up() -> None:
        while len(pending) < lookahead:
            ref = next(feed, None)
            if ref is None:
                return
            pending.append((ref, pool.submit(read, ref)))

    def emit(result: ImageResult, image=None) -> None:
        writer.put(result, image if keep_images else None)
        if on_result is not None:
            on_result(result)

    try:
        top_up()
        batch: list = []
        read_seconds: list[float] = []
        while pending:
            ref, fut = pending.popleft()
            top_up()
            try:
                image, x, dt = fut.result()
            except Exception as e:  # unreadable/corrupt image: recorded, and the job goes on
                emit(ImageResult(ref.key, error=error_text(e)))
                image = None
            if image is not None:
                batch.append((ref.key, image, x, prompts.get(ref.key)))
                read_seconds.append(dt)
            if batch and (len(batch) >= bs or not pending):
                for (_, img, _, _), r, dt in zip(batch, segmenter.segment(batch), read_seconds):
                    r.seconds += dt
                    emit(r, img)
                batch, read_seconds = [], []
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
