"""The server's engine: the model (one call at a time), an encoder queue that micro-batches
concurrent uploads, the embedding cache (memory LRU bounded by entries and bytes, optional disk copy)
and the mask cache used for ``mask_from`` refinement."""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import transforms as T
from .._files import atomic_write
from .._lru import LRU
from ..modeling import SAM2Model
from ..predictors import ImagePredictor
from .config import ServerConfig
from .errors import ApiError


@dataclass
class Embedding:
    image_embed: torch.Tensor  # (1, C, h, w)
    high_res: list[torch.Tensor]
    orig_hw: tuple[int, int]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self.image_embed, *self.high_res))


class Engine:
    # Images whose ImagePredictor is kept between requests. A predictor holds the decoder's image side
    # prepared once per image (13 MiB in bf16 for the tiny model: the prompt-free image tokens, the
    # first layer's projections, the upscaling's skips); a fresh predictor per request would redo it
    # on every click (see the performance page).
    PREDICTORS_KEPT = 8

    def __init__(self, model: SAM2Model, config: ServerConfig) -> None:
        self.model, self.config = model, config
        self.head = None  # a PromptFreeHead, set by the app's lifespan when the settings name one
        self._detector = None  # text prompts' detector, loaded at the first text request
        self._detector_lock = threading.Lock()
        self.model_lock = threading.Lock()  # model calls never run two at once on one device
        self.embeddings = LRU(config.cache_entries, config.cache_bytes)
        self.masks = LRU(config.mask_cache_entries)
        self.predictors = LRU(self.PREDICTORS_KEPT)
        self.uploads = LRU(64, 256 * 2**20)  # raw bytes of recent uploads, for automatic masks
        self._queue: queue.Queue = queue.Queue(maxsize=config.max_queue)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="samkit-encoder", daemon=True)
        self._worker.start()
        self.batches_run = 0
        self.images_encoded = 0

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5)

    # --- keys and the disk cache ---------------------------------------------------------------

    def key(self, image_bytes: bytes) -> str:
        return hashlib.sha256(image_bytes).hexdigest()

    def _disk_path(self, image_id: str) -> Path | None:
        if not self.config.cache_dir:
            return None
        return Path(self.config.cache_dir) / self.model.cfg.name / f"{image_id}.pt"

    def lookup(self, image_id: str) -> Embedding | None:
        emb = self.embeddings.get(image_id)
        if emb is not None:
            return emb
        path = self._disk_path(image_id)
        if path is not None and path.exists():
            try:
                d = torch.load(path, map_location="cpu", weights_only=True)
                emb = Embedding(d["image_embed"], list(d["high_res"]), tuple(d["orig_hw"]))
            except Exception:
                return None  # a damaged cache file is just a miss
            self.embeddings.put(image_id, emb, emb.nbytes)
            return emb
        return None

    def _store(self, image_id: str, emb: Embedding) -> None:
        if self.config.cache_on_cpu:
            emb = Embedding(emb.image_embed.cpu(), [t.cpu() for t in emb.high_res], emb.orig_hw)
        self.embeddings.put(image_id, emb, emb.nbytes)
        path = self._disk_path(image_id)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            payload = {
                "image_embed": emb.image_embed.cpu(),
                "high_res": [t.cpu() for t in emb.high_res],
                "orig_hw": list(emb.orig_hw),
            }
            atomic_write(path, lambda p: torch.save(payload, p))

    def detector(self):
        """The text prompts' detector (:class:`samkit.text.Detector`), loaded once."""
        with self._detector_lock:
            if self._detector is None:
                from ..text import Detector

                self._detector = Detector.load(self.config.detector, device=self.model.device)
            return self._detector

    def predictor(self, image_id: str, emb: Embedding) -> ImagePredictor:
        """The ImagePredictor of an image, set to its embedding: the one kept from the last request on
        this image, or a new one. Call it under ``model_lock``, and use the predictor under it too."""
        pred = self.predictors.get(image_id)
        if pred is None:
            pred = ImagePredictor(self.model)
            dev = self.model.device
            pred.set_embedding(emb.image_embed.to(dev), [t.to(dev) for t in emb.high_res], emb.orig_hw)
            self.predictors.put(image_id, pred)
        return pred

    # --- encoding (micro-batched) --------------------------------------------------------------

    def encode(self, image_id: str, image: np.ndarray, timeout: float = 300.0) -> Embedding:
        """Encode an image (or wait for a concurrent request encoding the same batch)."""
        fut: Future = Future()
        try:
            self._queue.put_nowait((image_id, image, fut))
        except queue.Full:
            raise ApiError(
                503, "busy", "the encoder queue is full; retry shortly", headers={"Retry-After": "1"}
            ) from None
        return fut.result(timeout=timeout)

    def _run(self) -> None:
        cfg = self.config
        while not self._stop.is_set():
            try:
                first = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            batch = [first]
            deadline = time.monotonic() + cfg.max_wait_ms / 1000
            while len(batch) < cfg.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            try:
                with self.model_lock, torch.inference_mode():
                    x = T.preprocess_images([b[1] for b in batch], self.model.image_size, self.model.device)
                    embed, high_res = self.model.encode_images(x)
                self.batches_run += 1
                self.images_encoded += len(batch)
                for i, (image_id, image, fut) in enumerate(batch):
                    emb = Embedding(
                        embed[i : i + 1], [h[i : i + 1] for h in high_res], tuple(image.shape[:2])
                    )
                    self._store(image_id, emb)
                    fut.set_result(self.embeddings.get(image_id) or emb)
            except Exception as e:  # pragma: no cover - surfaced to every waiting request
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(e)

    @property
    def queue_size(self) -> int:
        return self._queue.qsize()
