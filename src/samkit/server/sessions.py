"""Video sessions of the server: one tracking state per uploaded video, bounded by an idle timeout."""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..video.state import VideoState
from .errors import ApiError

__all__ = ["Sessions", "VideoSession"]


@dataclass
class VideoSession:
    video_id: str
    folder: Path
    state: VideoState
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.monotonic)
    meta: dict = field(default_factory=dict)  # what an integration keeps with the session


class Sessions:
    """Open video sessions; idle ones expire (checked on every request)."""

    def __init__(self, idle_seconds: float) -> None:
        self.idle_seconds = idle_seconds
        self._d: dict[str, VideoSession] = {}
        self._lock = threading.Lock()

    def add(self, s: VideoSession) -> None:
        with self._lock:
            self._d[s.video_id] = s

    def get(self, video_id: str) -> VideoSession:
        self.expire()
        with self._lock:
            s = self._d.get(video_id)
        if s is None:
            raise ApiError(404, "unknown_video", f"no video session {video_id!r} (it may have expired)")
        s.last_used = time.monotonic()
        return s

    def remove(self, video_id: str) -> bool:
        with self._lock:
            s = self._d.pop(video_id, None)
        if s is not None:
            s.state.video.close()
            shutil.rmtree(s.folder, ignore_errors=True)
        return s is not None

    def expire(self) -> None:
        now = time.monotonic()
        with self._lock:
            old = [
                k for k, s in self._d.items() if now - s.last_used > self.idle_seconds and not s.lock.locked()
            ]
        for k in old:
            self.remove(k)

    def close(self) -> None:
        for k in list(self._d):
            self.remove(k)

    def __len__(self) -> int:
        return len(self._d)
