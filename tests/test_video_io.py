"""Lazy video sources: files (PyAV), folders, lists; random access and errors."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.video.io import FrameCache, FrameFolder, FrameList, VideoFile, VideoReadError, open_video
from videogen import synthetic_frames, write_folder, write_mp4


@pytest.fixture(scope="module")
def mp4(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("v") / "clip.mp4", synthetic_frames(30))


def test_video_file_random_access_equals_sequential(mp4):
    v = VideoFile(mp4)
    assert len(v) == 30 and (v.height, v.width) == (72, 96)
    seq = [v.frame(i) for i in range(30)]
    v2 = VideoFile(mp4)
    for i in [29, 3, 17, 16, 0, 25, 8, 9]:  # backwards, across keyframes, repeated
        np.testing.assert_array_equal(v2.frame(i), seq[i])
    # each decoded frame is closest to the frame encoded at its index (lossy codec: not equal)
    src = np.stack(synthetic_frames(30)).astype(int)
    for i in range(30):
        assert np.abs(src - seq[i].astype(int)).mean(axis=(1, 2, 3)).argmin() == i


def test_shared_dog_video(data_dir):
    v = VideoFile(data_dir / "videos" / "dog.mp4")
    assert len(v) == 289 and (v.width, v.height) == (1280, 720) and abs(v.fps - 29.97) < 0.01
    assert v.frame(288).shape == (720, 1280, 3)


def test_folder_sorted_numerically(tmp_path):
    frames = synthetic_frames(12)
    folder = tmp_path / "f"
    folder.mkdir()
    from PIL import Image

    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i}.png")  # 0.png, 1.png, ..., 10.png, 11.png
    src = FrameFolder(folder)
    assert [p.name for p in src.paths][:3] == ["0.png", "1.png", "2.png"] and src.paths[10].name == "10.png"
    np.testing.assert_array_equal(src.frame(10), frames[10])


def test_open_video_dispatch(tmp_path, mp4):
    assert isinstance(open_video(str(mp4)), VideoFile)
    assert isinstance(open_video(write_folder(tmp_path / "d", synthetic_frames(3))), FrameFolder)
    assert isinstance(open_video(synthetic_frames(3)), FrameList)
    assert len(open_video(np.stack(synthetic_frames(4)))) == 4


def test_frame_cache_is_bounded(mp4):
    cache = FrameCache(VideoFile(mp4), size=64, capacity=3)
    for i in range(10):
        assert cache[i].shape == (3, 64, 64)
    assert len(cache._items) == 3


@pytest.mark.parametrize(
    "kind", ["missing", "garbage", "truncated", "empty_folder", "empty_list", "not_video"]
)
def test_unreadable_videos(tmp_path, mp4, kind):
    if kind == "missing":
        with pytest.raises(FileNotFoundError):
            open_video(tmp_path / "nope.mp4")
        return
    if kind == "garbage":
        bad = tmp_path / "bad.mp4"
        bad.write_bytes(b"\x00\x01garbage" * 100)
        with pytest.raises(VideoReadError, match="cannot read video"):
            open_video(bad)
        return
    if kind == "truncated":
        data = mp4.read_bytes()
        cut = tmp_path / "cut.mp4"
        cut.write_bytes(data[: len(data) // 3])
        with pytest.raises(VideoReadError):
            v = open_video(cut)
            for i in range(len(v)):
                v.frame(i)
        return
    if kind == "empty_folder":
        (tmp_path / "empty").mkdir()
        with pytest.raises(VideoReadError, match="no frames"):
            open_video(tmp_path / "empty")
        return
    if kind == "empty_list":
        with pytest.raises(VideoReadError, match="empty"):
            open_video([])
        return
    with pytest.raises(TypeError):
        open_video(42)


def test_frame_index_errors(mp4):
    v = VideoFile(mp4)
    with pytest.raises(IndexError, match="out of range"):
        v.frame(30)
    with pytest.raises(IndexError):
        v.frame(-1)
    with pytest.raises(TypeError):
        v.frame(1.5)


def _preprocess_by_formula(frame: np.ndarray, size: int):
    """The reference's video frame preparation written out: PIL bicubic resize, /255 in float64, then
    ImageNet mean/std in float32."""
    import torch
    from PIL import Image

    resized = np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BICUBIC))
    x = torch.from_numpy(resized / 255.0).permute(2, 0, 1).float()
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    return (x - mean) / std


def test_preprocess_frame_looks_up_the_formulas_bits():
    import torch

    from samkit.transforms import preprocess_frame

    rng = np.random.default_rng(0)
    # every 8-bit level in every channel, several shapes (up and down), a flat white frame
    frames = [rng.integers(0, 256, (77, 131, 3), dtype=np.uint8), np.full((10, 10, 3), 255, np.uint8)]
    frames.append(np.stack([np.arange(256, dtype=np.uint8).reshape(16, 16)] * 3, -1))
    for frame in frames:
        for size in (64, 97):
            got = preprocess_frame(frame, size)
            assert got.dtype == torch.float32 and got.is_contiguous() and got.shape == (3, size, size)
            assert torch.equal(got, _preprocess_by_formula(frame, size))


def test_frame_cache_prefetch_gives_the_same_frames(mp4):
    import torch

    plain = FrameCache(VideoFile(mp4), size=64, capacity=4)
    ahead = FrameCache(VideoFile(mp4), size=64, capacity=4)
    for i in range(12):
        ahead.prefetch(i + 1)
        ahead.prefetch(i + 1)  # asking twice starts one read
        assert torch.equal(ahead[i], plain[i])
    assert len(ahead._pending) <= 1 and len(ahead._items) == 4
    ahead.prefetch(-1)
    ahead.prefetch(30)  # out of range: nothing to do
    for i in range(20):
        ahead.prefetch(i)
    assert len(ahead._pending) <= 4  # bounded: the oldest requests are dropped


def test_frame_cache_cancels_forgotten_reads_and_close_releases_the_thread():
    import threading
    import time

    class Slow(FrameList):
        """Reads block until released, and say which frames were read."""

        def __init__(self, frames):
            super().__init__(frames)
            self.started, self.release, self.read = threading.Event(), threading.Event(), []

        def frame(self, index):
            self.started.set()
            self.release.wait(5)
            self.read.append(index)
            return super().frame(index)

    src = Slow(synthetic_frames(8))
    cache = FrameCache(src, size=32, capacity=2)
    before = set(threading.enumerate())
    cache.prefetch(0)  # its read starts and waits
    assert src.started.wait(5)  # (before more requests: else 0 could be dropped before it started)
    cache.prefetch(1)
    queued = cache._pending[1]
    cache.prefetch(2)  # over capacity: 0 is forgotten (already running)
    cache.prefetch(3)  # 1 is forgotten before it started: cancelled
    assert queued.cancelled() and sorted(cache._pending) == [2, 3]
    worker = [t for t in set(threading.enumerate()) - before if t.name.startswith("samkit-frames")]
    assert len(worker) == 1
    cache.close()
    assert cache._executor is None and not cache._pending
    src.release.set()
    worker[0].join(5)
    assert not worker[0].is_alive()  # the thread went after the read in hand
    assert src.read == [0]  # neither the cancelled nor the closed-over reads ran
    time.sleep(0.05)
    assert cache[2].shape == (3, 32, 32)  # still usable, read in the caller's thread
    cache.prefetch(4)
    assert cache[4].shape == (3, 32, 32)  # and reading ahead starts a new thread
    cache.close()


def test_frame_cache_prefetch_failure_raises_where_the_frame_is_used(tmp_path):
    from PIL import Image

    folder = tmp_path / "f"
    folder.mkdir()
    for i, f in enumerate(synthetic_frames(3)):
        Image.fromarray(f).save(folder / f"{i}.png")
    cache = FrameCache(FrameFolder(folder), size=32)
    (folder / "2.png").write_bytes(b"not a png")
    cache.prefetch(2)  # fails in the background, silently
    assert cache[0].shape == (3, 32, 32)
    with pytest.raises(VideoReadError, match="2.png"):
        cache[2]


def test_video_file_serves_readers_on_several_threads(tmp_path):
    """The tracker's prefetch thread and server requests read one file at once: every frame comes back
    right (PyAV itself is not thread-safe; the file reader takes turns)."""
    from concurrent.futures import ThreadPoolExecutor

    from samkit.video.io import VideoFile
    from videogen import synthetic_frames, write_mp4

    video = VideoFile(write_mp4(tmp_path / "clip.mp4", synthetic_frames(16)))
    want = [video.frame(i) for i in range(16)]
    order = [int(i) for i in np.random.default_rng(0).permutation(16)] * 3
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(video.frame, order))
    assert all(np.array_equal(g, want[i]) for g, i in zip(got, order))
