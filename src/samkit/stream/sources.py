"""Live frame sources read through PyAV: webcams (``/dev/video0``, v4l2), network streams (RTSP,
HTTP(S) MJPEG or HLS, UDP...) and files still being written.

A :class:`LiveSource` decodes in a background thread and hands frames over through a one-frame slot:

* **dropping** (the default for cameras and network streams): when tracking is slower than the
  stream, a frame not yet taken is replaced by the newer one and counted in ``dropped``: the tracker
  always gets the latest picture and nothing queues up;
* **not dropping** (the default for files): the reader waits until the frame is taken.

A stream that fails or ends is reopened with exponential back-off; ``retries`` failed attempts in a
row end it: with a :class:`StreamError` when the last attempt failed (an unreachable camera or
server, a stream lost for good), quietly when a file stopped growing or a reopened stream had nothing
more. A file is read again from where
it was left (frames already delivered are skipped), which is how a file still being written is
followed.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from .tracker import StreamError

__all__ = ["FrameSlot", "LiveSource", "source_kind"]

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def source_kind(url: str) -> str:
    """``"device"`` (a v4l2 camera), ``"network"`` (``scheme://...``) or ``"file"``."""
    if url.startswith("/dev/video"):
        return "device"
    if _URL.match(url) and not url.startswith("file://"):
        return "network"
    return "file"


class FrameSlot:
    """A one-frame hand-over between a reader thread and a consumer, dropping or waiting."""

    def __init__(self, drop: bool) -> None:
        self.drop = drop
        self.dropped = 0
        self._item = None
        self._full = False
        self._done = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()

    def put(self, item, stop: threading.Event | None = None) -> bool:
        """Hand over ``item``; returns False if ``stop`` was set while waiting for room."""
        with self._cond:
            if self._full:
                if self.drop:
                    self.dropped += 1  # the consumer never sees the frame it did not take in time
                else:
                    while self._full and not (stop is not None and stop.is_set()):
                        self._cond.wait(0.1)
                    if self._full:
                        return False
            self._item, self._full = item, True
            self._cond.notify_all()
            return True

    def finish(self, error: BaseException | None = None) -> None:
        """No more frames; the consumer gets those left, then ``error`` raised (or the end)."""
        with self._cond:
            self._done, self._error = True, error
            self._cond.notify_all()

    def get(self):
        """The next frame; raises ``error`` or StopIteration once finished and empty."""
        with self._cond:
            while not self._full and not self._done:
                self._cond.wait()
            if self._full:
                item, self._item, self._full = self._item, None, False
                self._cond.notify_all()
                return item
            if self._error is not None:
                raise self._error
            raise StopIteration


class LiveSource:
    """Frames of a live source as HxWx3 uint8 RGB arrays: ``for frame in LiveSource(url): ...``.

    Args:
        url: ``/dev/video0``, ``rtsp://...``, ``http(s)://...``, or a file path (followed as it grows).
        drop_frames: replace a frame not yet taken by the newer one (default: on for cameras and
            network streams, off for files).
        max_fps: deliver at most this many frames per second of the stream's own clock (frame
            timestamps; the wall clock where a stream has none); the others are skipped.
        retries: failed attempts in a row (opening or reading) before giving up.
        backoff: seconds before the first retry; doubles each attempt, up to ``max_backoff``.
        timeout: seconds to wait on a network stream before an attempt counts as failed.
        input_format: force FFmpeg's input format (``v4l2``, ``mjpeg``, ``mpegts``...).
        on_event: called with a line of text on each reconnect (for logs).
    """

    def __init__(
        self,
        url: str | Path,
        drop_frames: bool | None = None,
        max_fps: float | None = None,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        timeout: float = 10.0,
        input_format: str | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if max_fps is not None and not max_fps > 0:
            raise ValueError(f"max_fps must be > 0, got {max_fps}")
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.url = str(url)
        self.kind = source_kind(self.url)
        if self.kind == "file" and not Path(self.url.removeprefix("file://")).exists():
            raise StreamError(f"no such file: {self.url}")
        self.drop_frames = self.kind != "file" if drop_frames is None else drop_frames
        self.max_fps, self.retries, self.backoff, self.max_backoff = max_fps, retries, backoff, max_backoff
        self.timeout, self.input_format, self.on_event = timeout, input_format, on_event
        self.frames_read = 0  # decoded (delivered, dropped or skipped)
        self.skipped = 0  # left out by max_fps
        self.reconnects = 0
        self.fps: float | None = None  # the stream's nominal rate, once open
        self._slot = FrameSlot(self.drop_frames)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def dropped(self) -> int:
        """Frames replaced before tracking took them."""
        return self._slot.dropped

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._read, name="samkit-live-source", daemon=True)
            self._thread.start()
        while True:
            try:
                yield self._slot.get()
            except StopIteration:
                return

    def close(self) -> None:
        """Stop reading (the reader thread ends at its next frame or retry)."""
        self._stop.set()
        self._slot.finish()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1)

    def __enter__(self) -> LiveSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- the reader thread ------------------------------------------------------------------------

    def _open(self):
        import av

        options = {}
        fmt = self.input_format
        if self.kind == "device":
            fmt = fmt or "v4l2"
        elif self.kind == "network" and self.url.lower().startswith("rtsp"):
            options["rtsp_transport"] = "tcp"
        kw = {"timeout": self.timeout} if self.kind == "network" else {}
        return av.open(self.url.removeprefix("file://"), format=fmt, options=options, **kw)

    def _read(self) -> None:
        attempt = 0
        delivered_from_file = 0  # frames of a file already handed over: skipped when it is reopened
        last_time = None
        ever_read = False
        error: BaseException | None = None
        while not self._stop.is_set():
            reason = "the stream ended"
            try:
                with self._open() as container:
                    last_time = None  # a reopened stream's clock may start again
                    stream = container.streams.video[0]
                    if stream.average_rate:
                        self.fps = float(stream.average_rate)
                    for i, frame in enumerate(container.decode(stream)):
                        if self._stop.is_set():
                            break
                        if self.kind == "file":
                            if i < delivered_from_file:
                                continue
                            delivered_from_file += 1
                        attempt, ever_read = 0, True
                        self.frames_read += 1
                        if self.max_fps is not None:
                            t = frame.time if frame.time is not None else time.monotonic()
                            if last_time is not None and 0 <= t - last_time < 1.0 / self.max_fps - 1e-9:
                                self.skipped += 1
                                continue
                            last_time = t
                        if not self._slot.put(frame.to_ndarray(format="rgb24"), self._stop):
                            break
            except Exception as e:  # noqa: BLE001 - any failure of PyAV/FFmpeg is a dropped stream
                reason = f"{type(e).__name__}: {e}"
                error = e
            else:
                error = None
            if self._stop.is_set():
                break
            attempt += 1
            if attempt > self.retries:
                if error is None and (ever_read or self.kind == "file"):
                    self._slot.finish()  # a file that stopped growing, a stream that ended
                else:
                    tried = f"{self.retries + 1} attempt{'s' if self.retries else ''}"
                    self._slot.finish(StreamError(f"cannot read {self.url} ({tried}): {reason}"))
                return
            delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
            self.reconnects += 1
            if self.on_event is not None:
                self.on_event(
                    f"{reason}; reopening {self.url} in {delay:.1f} s (attempt {attempt}/{self.retries})"
                )
            if self._stop.wait(delay):
                break
        self._slot.finish()
