"""Where a live session's results go: masks as NDJSON (one line per frame), an MJPEG stream of the
overlay that any browser shows, and an optional recording of the overlay."""

from __future__ import annotations

import io
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from .. import rle

__all__ = ["MJPEGServer", "MaskLog", "Recorder", "frame_record"]


def frame_record(index: int, masks: dict, seconds: float | None = None, ms: float | None = None) -> dict:
    """One frame's masks as JSON: ``{"frame", "objects": [{"obj_id", "area", "rle"}]}`` (+ timings)."""
    doc: dict = {"frame": index}
    if seconds is not None:
        doc["time"] = round(seconds, 4)
    if ms is not None:
        doc["ms"] = round(ms, 2)
    doc["objects"] = rle.object_records(masks.keys(), masks.values())
    return doc


class MaskLog:
    """Masks as NDJSON, one line per frame, flushed as it is written (a crash loses at most the line
    being written). ``append``: continue an existing file (a restored session's log)."""

    def __init__(self, path: str | os.PathLike, append: bool = False) -> None:
        self.path = Path(path)
        self._f = open(self.path, "a" if append else "w", buffering=1, encoding="utf-8")  # noqa: SIM115
        self.lines = 0

    def write(self, record: dict) -> None:
        self._f.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.lines += 1

    def close(self) -> None:
        self._f.close()


class Recorder:
    """The overlay as an H.264 video, written as frames come (``fps``: the stream's rate)."""

    def __init__(self, path: str | os.PathLike, fps: float | None) -> None:
        self.path, self.fps = Path(path), fps or 10.0
        self._container = None
        self._stream = None
        self.frames = 0

    def write(self, picture: np.ndarray) -> None:
        import av

        h, w = picture.shape[0] - picture.shape[0] % 2, picture.shape[1] - picture.shape[1] % 2
        if self._container is None:
            self._container = av.open(str(self.path), mode="w", format="mp4")
            self._stream = self._container.add_stream("libx264", rate=max(1, round(self.fps)))
            self._stream.width, self._stream.height, self._stream.pix_fmt = w, h, "yuv420p"
            self._stream.options = {"crf": "23", "preset": "veryfast"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(picture[:h, :w]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        if self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None


class MJPEGServer:
    """Serves the latest overlay as an MJPEG stream (``multipart/x-mixed-replace``) at
    ``http://HOST:PORT/``: open it in a browser to watch a headless tracker. ``port=0`` picks a free
    port (``.port``)."""

    BOUNDARY = "samkitframe"

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 80) -> None:
        self.quality = quality
        self._jpeg: bytes | None = None
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header(
                    "Content-Type", f"multipart/x-mixed-replace; boundary={MJPEGServer.BOUNDARY}"
                )
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                seen = -1
                try:
                    while True:
                        jpeg, seen = server._next(seen)
                        if jpeg is None:
                            return
                        self.wfile.write(
                            f"--{MJPEGServer.BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                            f"Content-Length: {len(jpeg)}\r\n\r\n".encode()
                            + jpeg
                            + b"\r\n"
                        )
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the viewer went away

            def log_message(self, *args):  # quiet
                pass

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise OSError(f"cannot serve MJPEG on {host}:{port}: {e.strerror or e}") from None
        self._httpd.daemon_threads = True
        self.host, self.port = host, self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="samkit-mjpeg", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def update(self, picture: np.ndarray) -> None:
        """Show this RGB picture to every viewer."""
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(picture).save(buf, format="JPEG", quality=self.quality)
        with self._cond:
            self._jpeg, self._seq = buf.getvalue(), self._seq + 1
            self._cond.notify_all()

    def _next(self, seen: int) -> tuple[bytes | None, int]:
        with self._cond:
            while not self._closed and (self._jpeg is None or self._seq == seen):
                self._cond.wait(1.0)
            return (None, seen) if self._closed else (self._jpeg, self._seq)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._httpd.shutdown()
        self._httpd.server_close()
