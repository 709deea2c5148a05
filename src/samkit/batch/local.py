"""The local engine: no Ray, every core of this machine.

Two ways to use the cores, chosen by ``processes``:

- ``processes=1``: reader threads fetch and decode images ahead of the model (PIL releases the GIL), the
  main thread preprocesses, encodes in batches and decodes prompts with torch using all cores, and a
  writer thread writes results. (Preprocessing stays on the main thread: torch ops from two threads at
  once each start an OpenMP team, and the oversubscribed cores slowed the encoder by 15%.)
- ``processes=N``: N worker processes, each with its own model and ``cores / N`` torch threads, take
  whole images (read, decode, segment); the parent writes results. On a 2-core CPU two 1-thread
  encoders give more images/s than one 2-thread encoder (see benchmarks/bench_batch.py).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool

from ..runtime import tune_allocator
from .inputs import ImageRef, load
from .job import BatchSettings, ImageResult, Segmenter, error_text
from .output import BackgroundWriter
from .prompts import Prompt


def default_processes(device: str | None) -> int:
    """Worker processes for the local engine: 2 on a multi-core CPU (measured faster than one process
    with all threads), 1 on an accelerator (one model per device)."""
    import torch

    on_cpu = device == "cpu" or (device is None and not torch.cuda.is_available())
    return 2 if on_cpu and (os.cpu_count() or 1) >= 2 else 1


def run_local(
    todo: Iterable[ImageRef],
    settings: BatchSettings,
    writer: BackgroundWriter,
    prompts: dict[str, list[Prompt]] | None = None,
    workers: int = 2,
    processes: int = 1,
    model=None,
) -> None:
    """Process ``todo``, handing every result to ``writer`` (with the image when overlays are drawn).

    Args:
        workers: reader threads (``processes=1``); they run ahead by a bounded number of images.
        processes: worker processes, each with its own model (1: this process, using ``model``).
        model: an already loaded model for ``processes=1``.
    """
    if processes <= 1:
        _run_in_process(
            list(todo), Segmenter(settings, model=model), writer, prompts or {}, workers, settings.overlay
        )
    else:
        _run_processes(list(todo), settings, writer, prompts or {}, processes)


def _run_in_process(
    todo: list[ImageRef],
    segmenter: Segmenter,
    writer: BackgroundWriter,
    prompts: dict[str, list[Prompt]],
    workers: int,
    keep_images: bool,
) -> None:
    bs = max(1, segmenter.batch_size)
    lookahead = bs + 2 * max(1, workers)  # bounded: at most this many decoded images wait in memory

    def read(ref: ImageRef):
        t = time.perf_counter()
        image = load(ref)
        return image, time.perf_counter() - t

    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="samkit-batch-reader")
    pending: deque[tuple[ImageRef, Future]] = deque()
    feed = iter(todo)

    def top_up() -> None:
        while len(pending) < lookahead:
            ref = next(feed, None)
            if ref is None:
                return
            pending.append((ref, pool.submit(read, ref)))

    try:
        top_up()
        batch: list = []
        read_seconds: list[float] = []
        while pending:
            ref, fut = pending.popleft()
            top_up()
            try:
                image, dt = fut.result()
            except Exception as e:  # unreadable/corrupt image: recorded, and the job goes on
                writer.put(ImageResult(ref.key, error=error_text(e)))
                image = None
            if image is not None:
                batch.append((ref.key, image, prompts.get(ref.key)))
                read_seconds.append(dt)
            if batch and (len(batch) >= bs or not pending):
                for (_, img, _), r, dt in zip(batch, segmenter.segment(batch), read_seconds):
                    r.seconds += dt
                    writer.put(r, img if keep_images else None)
                batch, read_seconds = [], []
    finally:
        for _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# --- worker processes -------------------------------------------------------------------------

_WORKER: Segmenter | None = None


def _exit_with_parent(parent: int) -> None:
    # a parent killed with -9 cannot stop its workers: they notice they were orphaned and leave
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _init_worker(settings: BatchSettings, threads: int, parent: int) -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what a Ctrl-C stops
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    tune_allocator()
    global _WORKER
    _WORKER = Segmenter(settings)


def _work(ref: ImageRef, prompts: list[Prompt] | None) -> ImageResult:
    t = time.perf_counter()
    try:
        image = load(ref)
    except Exception as e:
        return ImageResult(ref.key, error=error_text(e), seconds=time.perf_counter() - t)
    dt = time.perf_counter() - t
    result = _WORKER.segment([(ref.key, image, prompts)])[0]
    result.seconds += dt
    return result


def _run_processes(
    todo: list[ImageRef],
    settings: BatchSettings,
    writer: BackgroundWriter,
    prompts: dict[str, list[Prompt]],
    processes: int,
) -> None:
    threads = max(1, (os.cpu_count() or 1) // processes)
    # spawn, not fork: a forked child of a process whose OpenMP pool already ran can hang
    pool = ProcessPoolExecutor(
        max_workers=processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(settings, threads, os.getpid()),
    )
    by_future: dict[Future, ImageRef] = {}
    feed = iter(todo)
    interrupted = False
    try:
        while True:
            while len(by_future) < 2 * processes:  # a couple of images queued per worker, no more
                ref = next(feed, None)
                if ref is None:
                    break
                by_future[pool.submit(_work, ref, prompts.get(ref.key))] = ref
            if not by_future:
                break
            done, _ = wait(by_future, return_when=FIRST_COMPLETED)
            for fut in done:
                ref = by_future.pop(fut)
                result = fut.result()
                image = load(ref) if settings.overlay and result.ok else None
                writer.put(result, image)
    except BrokenProcessPool:
        raise RuntimeError(
            "a batch worker process died (out of memory?); the finished results are saved, "
            "rerun to continue (--processes 1 uses less memory)"
        ) from None
    except KeyboardInterrupt:
        interrupted = True
        raise
    finally:
        for fut in by_future:
            fut.cancel()
        if interrupted:
            # stop the images in flight at once; their results were never written, so a rerun redoes them
            for p in list(getattr(pool, "_processes", {}).values()):
                p.terminate()
        pool.shutdown(wait=True, cancel_futures=True)
