"""Video sources read lazily: a video file (PyAV), a folder of frames, or a list of frames.

Frames are decoded on demand and kept in a small LRU cache, so memory does not grow with the length
of the video (the reference decodes every frame up front). A video that cannot be read raises
:class:`VideoReadError` naming the file and, where it applies, the frame.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from .._lru import LRU
from ..transforms import ImageDecodeError, decode_image, load_image, preprocess_frame, to_rgb_array

__all__ = [
    "FrameFolder",
    "FrameList",
    "VideoFile",
    "VideoReadError",
    "VideoSource",
    "open_video",
]

FRAME_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTENSIONS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class VideoReadError(ValueError):
    """The video (or one of its frames) cannot be read."""


class VideoSource:
    """Random access to RGB frames: ``len(src)``, ``src.height``, ``src.width``, ``src.frame(i)``."""

    height: int
    width: int
    name: str

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def frame(self, index: int) -> np.ndarray:  # pragma: no cover - abstract
        """Frame ``index`` as an HxWx3 uint8 RGB array."""
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _check_index(self, index: int) -> int:
        n = len(self)
        if not isinstance(index, (int, np.integer)) or isinstance(index, bool):
            raise TypeError(f"frame index must be an int, got {type(index).__name__}")
        if not 0 <= index < n:
            raise IndexError(f"frame index {index} out of range for a video of {n} frames (0..{n - 1})")
        return int(index)


class FrameList(VideoSource):
    """Frames given in memory: a list of HxWx3 uint8 arrays or PIL images (or an (N, H, W, 3) array)."""

    def __init__(self, frames: Sequence) -> None:
        if len(frames) == 0:
            raise VideoReadError("the list of frames is empty")
        self._frames = frames
        first = to_rgb_array(frames[0])
        self.height, self.width = first.shape[:2]
        self.name = f"<{len(frames)} frames>"

    def __len__(self) -> int:
        return len(self._frames)

    def frame(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        try:
            return to_rgb_array(self._frames[index])
        except (TypeError, ValueError) as e:
            raise VideoReadError(f"frame {index}: {e}") from None


def _natural_key(path: Path):
    stem = path.stem
    return (
        (0, int(stem), "")
        if stem.isdigit()
        else (1, 0, [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem)])
    )


class FrameFolder(VideoSource):
    """A folder of image files, one per frame, in numeric (natural) order of their names."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        self.paths = sorted(
            (p for p in folder.iterdir() if p.suffix.lower() in FRAME_EXTENSIONS and p.is_file()),
            key=_natural_key,
        )
        if not self.paths:
            raise VideoReadError(f"no frames (JPEG/PNG images) found in {folder}")
        self.name = str(folder)
        first = self.frame(0)
        self.height, self.width = first.shape[:2]

    def __len__(self) -> int:
        return len(self.paths)

    def frame(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        try:
            return decode_image(self.paths[index].read_bytes())
        except (ImageDecodeError, OSError) as e:
            raise VideoReadError(f"cannot read frame {index} ({self.paths[index].name}): {e}") from None


class VideoFile(VideoSource):
    """A video file decoded with PyAV. Sequential access decodes forward; a jump seeks to the nearest
    keyframe first. Frame timestamps are indexed once from the packets, without decoding."""

    # decoding forward beats seeking for gaps up to this many frames
    MAX_FORWARD_GAP = 48

    def __init__(self, path: str | Path) -> None:
        try:
            import av
        except ImportError:  # pragma: no cover - av is a dependency
            raise VideoReadError("reading video files needs PyAV: pip install av") from None
        self.path = Path(path)
        self.name = str(path)
        if not self.path.exists():
            raise FileNotFoundError(f"video not found: {path}")
        try:
            self._container = av.open(str(self.path))
            streams = self._container.streams.video
            if not streams:
                raise VideoReadError(f"{path} has no video stream")
            self._stream = streams[0]
            self._stream.thread_type = "AUTO"
            pts = [p.pts for p in self._container.demux(self._stream) if p.pts is not None and p.size > 0]
        except VideoReadError:
            raise
        except Exception as e:  # av.error.* for truncated or non-video files
            raise VideoReadError(f"cannot read video {path}: {e}") from None
        if not pts:
            raise VideoReadError(f"video {path} has no frames")
        self._pts = sorted(pts)
        self._index_of_pts = {p: i for i, p in enumerate(self._pts)}
        self.width = self._stream.codec_context.width
        self.height = self._stream.codec_context.height
        self.fps = float(self._stream.average_rate) if self._stream.average_rate else 30.0
        self._iter = None
        self._next = 0
        self._lock = threading.Lock()
        self._seek(0)

    def __len__(self) -> int:
        return len(self._pts)

    def _seek(self, index: int) -> None:
        self._container.seek(self._pts[index], stream=self._stream, backward=True, any_frame=False)
        self._iter = self._container.decode(self._stream)
        self._next = None  # unknown until the first decoded frame tells its timestamp

    def frame(self, index: int) -> np.ndarray:
        # one decoder, one reader at a time: the tracker's prefetch thread and a server request for a
        # frame (the page's scrubbing, a text prompt) may ask at once, and PyAV is not thread-safe
        with self._lock:
            return self._frame(index)

    def _frame(self, index: int) -> np.ndarray:
        index = self._check_index(index)
        if self._next is None or index < self._next or index > self._next + self.MAX_FORWARD_GAP:
            self._seek(index)
        try:
            while True:
                f = next(self._iter)
                i = self._index_of_pts.get(f.pts)
                if i is None:
                    continue
                self._next = i + 1
                if i == index:
                    return f.to_ndarray(format="rgb24")
                if i > index:  # the frame we want was skipped by the decoder
                    raise VideoReadError(f"frame {index} of {self.path} could not be decoded")
        except StopIteration:
            raise VideoReadError(
                f"video {self.path} ended before frame {index} (the file may be truncated)"
            ) from None
        except VideoReadError:
            raise
        except Exception as e:
            self._next = None
            raise VideoReadError(f"cannot decode frame {index} of {self.path}: {e}") from None

    def close(self) -> None:
        self._container.close()


def open_video(video) -> VideoSource:
    """A :class:`VideoSource` for a video file path, a folder of frames, a list of frames, or a source."""
    if isinstance(video, VideoSource):
        return video
    if isinstance(video, (str, Path)):
        p = Path(video)
        if p.is_dir():
            return FrameFolder(p)
        if not p.exists():
            raise FileNotFoundError(f"video not found: {video}")
        if p.suffix.lower() in FRAME_EXTENSIONS:
            return FrameList([load_image(p)])
        return VideoFile(p)
    if isinstance(video, np.ndarray) and video.ndim == 4:
        return FrameList(list(video))
    if isinstance(video, (list, tuple)):
        return FrameList(video)
    raise TypeError(
        f"expected a video path, a folder of frames or a list of frames, got {type(video).__name__}"
    )


class FrameCache:
    """LRU cache of preprocessed (3, S, S) frames on ``device``, bounded by ``capacity`` entries.

    :meth:`prefetch` prepares a frame in a background thread (decoding and resizing are CPU work the
    PIL and PyAV calls do without the GIL): a tracker asks for the next frame before it runs the
    current one, so on a GPU the frame is ready when the model wants it."""

    def __init__(
        self, source: VideoSource, size: int, capacity: int = 8, device: torch.device | str = "cpu"
    ) -> None:
        self.source, self.size, self.capacity, self.device = (
            source,
            size,
            max(1, capacity),
            torch.device(device),
        )
        self._items = LRU(self.capacity)
        self._pending: dict[int, Future] = {}  # index -> frame being prepared (main thread only)
        self._executor: ThreadPoolExecutor | None = None
        self._read_lock = threading.Lock()  # one reader of the source at a time (PyAV is not thread-safe)

    def _make(self, index: int) -> torch.Tensor:
        with self._read_lock:
            frame = self.source.frame(index)
        return preprocess_frame(frame, self.size, self.device)

    def __getitem__(self, index: int) -> torch.Tensor:
        pending = self._pending.pop(index, None)
        if pending is not None and self._items.get(index) is None:
            self._items.put(index, pending.result())  # a failed read raises here, where it is used
        return self._items.get_or_create(index, lambda: self._make(index))

    def prefetch(self, index: int) -> None:
        """Start preparing frame ``index`` in the background (no-op if it is cached, pending or out of
        range). At most ``capacity`` frames are pending; the oldest requests are forgotten."""
        if not 0 <= index < len(self.source) or index in self._pending or self._items.get(index) is not None:
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="samkit-frames")
        self._pending[index] = self._executor.submit(self._make, index)
        while len(self._pending) > self.capacity:
            # a forgotten read that has not started is not started at all
            self._pending.pop(next(iter(self._pending))).cancel()

    def settle(self) -> None:
        """Wait for the frames being prepared in the background (their errors are kept for when the
        frame is used): no read runs in another thread after this returns."""
        for fut in list(self._pending.values()):
            try:
                fut.result()
            except Exception:  # noqa: BLE001 - raised where the frame is used (__getitem__)
                pass

    def close(self) -> None:
        """Cancel the reads not started and let the background thread go (it finishes the read in
        hand, unwaited). Cached frames stay; a later :meth:`prefetch` starts a new thread."""
        self._pending.clear()
        if self._executor is not None:  # (the reads not started are all in its queue)
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __len__(self) -> int:
        return len(self.source)
