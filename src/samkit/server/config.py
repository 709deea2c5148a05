"""Server settings (one frozen dataclass; `samkit serve` fills it from its flags)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ServerConfig:
    model: str = "sam2.1-hiera-tiny"
    checkpoint: str | None = None
    device: str | None = None
    # embedding cache: entries and bytes, in memory; optional on-disk copy keyed by image hash + model
    cache_entries: int = 32
    cache_bytes: int = 2 * 2**30
    cache_on_cpu: bool = True
    cache_dir: str | None = None
    mask_cache_entries: int = 256
    # encoder micro-batching and back-pressure
    max_batch: int = 4  # requests gathered per encoder call (the encoder itself chunks per device)
    max_wait_ms: float = 10.0
    max_queue: int = 16
    # safety
    api_key: str | None = field(default_factory=lambda: os.environ.get("SAMKIT_API_KEY") or None)
    max_upload_bytes: int = 32 * 2**20
    max_pixels: int = 50_000_000
    cors_origins: tuple[str, ...] = ()
    # video sessions close after this long without a request
    video_idle_seconds: float = 600.0
