"""The page's video mode in headless Chromium: the image buttons re-targeted to the frame shown, a box
drag on a frame, objects in their own colours, propagation with a frame limit and Stop, the downloads
(SA-V annotations, a zip of PNGs) and reopening the same file."""

from __future__ import annotations

import io
import json
import threading
import zipfile

import numpy as np
from PIL import Image

from samkit import rle
from samkit.predictors.video import VideoPredictor

from .live import CHROMIUM, FLAGS


def _status(page, prefix: str, timeout: int = 30000) -> str:
    page.wait_for_function(
        f"document.getElementById('status').textContent.startsWith({json.dumps(prefix)})", timeout=timeout
    )
    return page.locator("#status").text_content()


def _pixel(page, x: int, y: int) -> list[int]:
    return page.evaluate(
        f"Array.from(document.getElementById('overlay').getContext('2d').getImageData({x}, {y}, 1, 1).data)"
    )


def test_video_mode_in_chromium(live_server, tmp_path, monkeypatch):
    from playwright.sync_api import sync_playwright

    from videogen import synthetic_frames, write_mp4

    # the second propagation pauses after its first frame until the test lets it go: Stop is pressed
    # mid-run
    gate, paused, calls = threading.Event(), threading.Event(), []
    real = VideoPredictor.propagate_in_video

    def gated(self, *args, **kwargs):
        calls.append(1)
        for i, item in enumerate(real(self, *args, **kwargs)):
            yield item
            if i == 0 and len(calls) == 2:
                paused.set()
                gate.wait(30)

    monkeypatch.setattr(VideoPredictor, "propagate_in_video", gated)
    clip = write_mp4(tmp_path / "clip.mp4", synthetic_frames(10))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(accept_downloads=True)
        page.goto(live_server + "/")
        page.set_input_files("#videofile", str(clip))
        _status(page, "Video ready")
        for button in ("everything", "download-png", "download-coco"):
            assert page.locator(f"#{button}").is_enabled(), button
        assert page.locator("#clear").is_disabled()
        page.fill("#frame", "3")
        page.dispatch_event("#frame", "input")
        page.wait_for_function("document.getElementById('frame-label').textContent === 'frame 3'")

        # "Everything" segments the frame shown
        page.click("#everything")
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('on frame 3')", timeout=60000
        )

        # a box drag on the frame prompts object 1
        box = page.locator("#overlay").bounding_box()
        sx, sy = box["width"] / 96, box["height"] / 72  # the clip is 96x72
        page.mouse.move(box["x"] + 10 * sx, box["y"] + 10 * sy)
        page.mouse.down()
        page.mouse.move(box["x"] + 50 * sx, box["y"] + 50 * sy, steps=4)
        page.mouse.up()
        _status(page, "frame 3: 1 object(s)")
        # object 2 by a click: its marker is drawn in its own colour, not object 1's
        page.click("#new-object")
        page.mouse.click(box["x"] + 70 * sx, box["y"] + 20 * sy)
        _status(page, "frame 3: 2 object(s)")
        page.screenshot(path=str(tmp_path / "video-prompts.png"))
        assert _pixel(page, 70, 20)[:3] == [255, 99, 71]  # COLORS[1]

        # a frame limit: 2 frames after the start
        page.fill("#max-frames", "2")
        page.click("#propagate")
        assert _status(page, "tracked 3 frame(s);").startswith("tracked 3 frame(s); scrub")

        # Stop during a run without a limit
        page.fill("#max-frames", "")
        page.click("#propagate")
        assert paused.wait(30)
        _status(page, "tracked 1 frame(s)")
        page.click("#stop")
        assert _status(page, "Stopped after 1 frame(s)")
        gate.set()
        page.wait_for_function("!document.getElementById('propagate').disabled")

        # downloads: samkit track's annotations.json layout and a zip of PNGs
        with page.expect_download() as dl:
            page.click("#download-coco")
        doc = json.loads(open(dl.value.path()).read())
        assert doc["masklet_id"] == [1, 2] and doc["video_frame_count"] == 10 and doc["video_width"] == 96
        assert doc["frame_indices"] == sorted(doc["frame_indices"]) and 3 in doc["frame_indices"]
        k = doc["frame_indices"].index(3)
        for r in doc["masklet"][k]:
            assert r["size"] == [72, 96] and rle.decode(r).shape == (72, 96)
        with page.expect_download() as dl:
            page.click("#download-png")
        with zipfile.ZipFile(dl.value.path()) as z:
            assert z.testzip() is None
            names = z.namelist()
            assert "masks/1/00003.png" in names and "masks/2/00003.png" in names
            png = np.array(Image.open(io.BytesIO(z.read("masks/1/00003.png"))).convert("L")) > 0
        assert np.array_equal(png, rle.decode(doc["masklet"][k][0]))

        # choosing the same file again reloads it
        page.set_input_files("#videofile", str(clip))
        _status(page, "Video ready")
        assert page.locator("#object-label").text_content() == "1"
        browser.close()
