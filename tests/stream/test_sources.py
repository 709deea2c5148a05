"""Live sources (PyAV), their outputs, and ``samkit track --live``."""

from __future__ import annotations

import http.client
import io
import json
import threading

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main
from samkit.stream import StreamError, StreamTracker
from samkit.stream.outputs import MJPEGServer, Recorder
from samkit.stream.sources import FrameSlot, LiveSource, source_kind
from videogen import synthetic_frames

FRAMES = synthetic_frames(12)


def jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def decoded(frame: np.ndarray) -> np.ndarray:
    """The frame as FFmpeg decodes its JPEG (what a live source delivers)."""
    import av

    with av.open(io.BytesIO(jpeg(frame)), format="mjpeg") as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def write_mjpeg(path, frames, mode="wb"):
    with open(path, mode) as f:
        f.write(b"".join(jpeg(fr) for fr in frames))
    return path


def test_source_kinds():
    assert source_kind("/dev/video0") == "device"
    assert source_kind("rtsp://cam.local/stream") == "network"
    assert source_kind("https://example.com/live.m3u8") == "network"
    assert source_kind("file:///tmp/x.mjpeg") == source_kind("clip.mp4") == "file"


def test_slot_drops_frames_not_taken_in_time():
    slot = FrameSlot(drop=True)
    for i in range(3):
        assert slot.put(i)
    assert slot.get() == 2 and slot.dropped == 2
    slot.put(3)
    slot.finish(StreamError("gone"))
    assert slot.get() == 3  # frames left are delivered before the error
    with pytest.raises(StreamError, match="gone"):
        slot.get()


def test_slot_without_dropping_waits_for_the_consumer():
    slot = FrameSlot(drop=False)
    got = []

    def produce():
        for i in range(5):
            slot.put(i)
        slot.finish()

    t = threading.Thread(target=produce)
    t.start()
    with pytest.raises(StopIteration):
        while True:
            got.append(slot.get())
    t.join()
    assert got == [0, 1, 2, 3, 4] and slot.dropped == 0


def test_a_growing_file_is_followed(tmp_path):
    """The reader reaches the end, reopens the file when more was written and goes on from where it
    was; when the file stops growing, the stream ends after the retries."""
    path = write_mjpeg(tmp_path / "growing.mjpeg", FRAMES[:6])
    events = []

    def on_event(line):
        events.append(line)
        if len(events) == 1:
            write_mjpeg(path, FRAMES[6:], mode="ab")  # the camera wrote more meanwhile

    with LiveSource(path, retries=2, backoff=0.001, on_event=on_event) as src:
        got = list(src)
    assert len(got) == 12
    for a, b in zip(got, FRAMES):
        np.testing.assert_array_equal(a, decoded(b))
    assert src.dropped == 0 and src.reconnects == 3 and "reopening" in events[0]


def test_max_fps_keeps_frames_by_their_timestamps(tmp_path):
    path = write_mjpeg(tmp_path / "clip.mjpeg", FRAMES)  # 25 frames/s stamps: 0, 0.04, 0.08...
    with LiveSource(path, max_fps=10, retries=0) as src:
        got = list(src)
    assert len(got) == 4 and src.skipped == 8  # frames at 0, 0.12, 0.24, 0.36 s
    np.testing.assert_array_equal(got[1], decoded(FRAMES[3]))


def test_an_unreachable_stream_fails_after_the_retries():
    events = []
    with LiveSource("http://127.0.0.1:9/live.mjpeg", retries=2, backoff=0.001, on_event=events.append) as src:
        with pytest.raises(StreamError, match=r"cannot read http://127.0.0.1:9/live.mjpeg \(3 attempts\)"):
            list(src)
    assert len(events) == 2


def test_mjpeg_server_streams_the_latest_picture():
    server = MJPEGServer(0)
    try:
        server.update(FRAMES[0])
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.getheader("Content-Type") == "multipart/x-mixed-replace; boundary=samkitframe"
        assert resp.readline() == b"--samkitframe\r\n"
        headers = {}
        while (line := resp.readline()) != b"\r\n":
            k, v = line.decode().split(":", 1)
            headers[k.strip().lower()] = v.strip()
        picture = Image.open(io.BytesIO(resp.read(int(headers["content-length"]))))
        assert picture.size == (96, 72)
        conn.close()
    finally:
        server.close()


def test_recorder_writes_every_frame(tmp_path):
    import av

    rec = Recorder(tmp_path / "rec.mp4", fps=10)
    for f in FRAMES[:5]:
        rec.write(f)
    rec.close()
    with av.open(str(tmp_path / "rec.mp4")) as c:
        assert sum(1 for _ in c.decode(video=0)) == 5


# --- samkit track --live ------------------------------------------------------------------------


def live(capsys, *argv, tiny_checkpoint):
    code = main(
        [str(a) for a in argv] + ["--model", "test-tiny", "--checkpoint", str(tiny_checkpoint), "--quiet"]
    )
    out, err = capsys.readouterr()
    return code, out, err


def read_log(path):
    from samkit import rle

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {d["frame"]: {o["obj_id"]: rle.decode(o["rle"]) for o in d["objects"]} for d in lines}


def test_track_live_writes_the_stream_trackers_masks(capsys, tmp_path, tiny_checkpoint, tiny_model):
    src = write_mjpeg(tmp_path / "cam.mjpeg", FRAMES)
    prompts = ["--prompt", "0:1:15,30", "--prompt", "4:2:box=60,30,90,60"]
    out = tmp_path / "live"
    code, stdout, err = live(
        capsys, "track", src, "--live", *prompts, "--out", out, "--retries", "0", "--max-frames", "8",
        "--save-state", tmp_path / "s.stream", "--record", tmp_path / "rec.mp4", tiny_checkpoint=tiny_checkpoint,
    )  # fmt: skip
    assert code == 0, err
    assert "2 object(s) through 8 frames" in stdout
    got = read_log(out / "masks.ndjson")
    session = StreamTracker(tiny_model)
    schedule = {0: {1: {"points": [[15, 30]], "labels": [1]}}, 4: {2: {"box": [60, 30, 90, 60]}}}
    for i in range(8):
        want = session.track(decoded(FRAMES[i]), schedule.get(i))
        assert list(got[i]) == list(want)
        for o in want:
            np.testing.assert_array_equal(got[i][o], want[o])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 8 and summary["error"] is None and summary["objects"] == [1, 2]

    # a run into the same folder starts a new log; a restored session goes on numbering from its state
    code, _, err = live(
        capsys, "track", src, "--live", *prompts, "--out", out, "--retries", "0", "--max-frames", "8",
        tiny_checkpoint=tiny_checkpoint,
    )  # fmt: skip
    assert code == 0, err
    assert len((out / "masks.ndjson").read_text().splitlines()) == 8
    code, stdout, err = live(
        capsys, "track", src, "--live", "--restore-state", tmp_path / "s.stream", "--out", out,
        "--retries", "0", "--max-frames", "2", tiny_checkpoint=tiny_checkpoint,
    )  # fmt: skip
    assert code == 0, err
    assert sorted(read_log(out / "masks.ndjson")) == list(range(10))


def test_track_live_errors_are_one_line(capsys, tmp_path, tiny_checkpoint):
    base = ["--out", tmp_path / "o"]
    code, _, err = live(
        capsys, "track", "http://127.0.0.1:9/cam.mjpeg", "--live", "--prompt", "0:1:5,5", "--retries", "1", *base,
        tiny_checkpoint=tiny_checkpoint,
    )  # fmt: skip
    assert code == 1 and "cannot read http://127.0.0.1:9/cam.mjpeg (2 attempts)" in err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["error"].startswith("cannot read")
    src = write_mjpeg(tmp_path / "cam.mjpeg", FRAMES[:3])
    for argv, fragment in [
        (["track", src, "--live"], "at least one --prompt"),
        (["track", src, "--live", "--prompt", "0:1:500,5", "--retries", "0"], "outside the 96x72"),
        (["track", src, "--record", "x.mp4", "--prompt", "0:1:5,5"], "--record goes with --live"),
        (["track", src, "--live", "--prompt", "0:1:5,5", "--reverse-only"], "does not apply to --live"),
        (["track", tmp_path / "nope.mjpeg", "--live", "--prompt", "0:1:5,5"], "no such file"),
        (["track", src, "--live", "--restore-state", tmp_path / "nope"], "cannot read the saved stream"),
    ]:
        code, _, err = live(capsys, *argv, *base, tiny_checkpoint=tiny_checkpoint)
        assert code != 0 and fragment in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
