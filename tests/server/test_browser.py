"""The annotation page in a real headless Chromium (Playwright): open an image, click, see a mask,
pick a candidate, download the PNG. Screenshots of each state go to the test's temp dir."""

from __future__ import annotations

import numpy as np
from PIL import Image

from .live import CHROMIUM, FLAGS


def test_click_to_mask_in_chromium(live_server, tmp_path):
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
    img[30:90, 40:120] = (220, 40, 40)
    photo = tmp_path / "photo.png"
    Image.fromarray(img).save(photo)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(accept_downloads=True)
        page.goto(live_server + "/")
        page.screenshot(path=str(tmp_path / "0-empty.png"))
        page.set_input_files("#file", str(photo))
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('Ready')", timeout=30000
        )
        page.screenshot(path=str(tmp_path / "1-loaded.png"))
        box = page.locator("#overlay").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('mask(s)')", timeout=30000
        )
        page.screenshot(path=str(tmp_path / "2-mask.png"))
        assert int(page.locator("#overlay").get_attribute("data-mask-pixels")) > 0
        assert page.locator("#candidates button").count() == 3
        page.locator("#candidates button").nth(1).click()
        page.screenshot(path=str(tmp_path / "3-candidate.png"))
        with page.expect_download() as dl:
            page.click("#download-png")
        path = tmp_path / "mask.png"
        dl.value.save_as(path)
        mask = np.array(Image.open(path).convert("L"))
        assert mask.shape == (120, 160) and set(np.unique(mask)) <= {0, 255} and mask.max() == 255
        # a right click adds a background point and re-segments with one mask
        page.mouse.click(box["x"] + 5, box["y"] + 5, button="right")
        page.wait_for_function("document.querySelectorAll('#candidates button').length === 1", timeout=30000)
        page.screenshot(path=str(tmp_path / "4-refined.png"))
        browser.close()


def test_video_flow_in_chromium(live_server, tmp_path):
    """Open a video, click an object on frame 2, propagate forward, scrub: masks drawn on other frames."""
    from playwright.sync_api import sync_playwright

    from videogen import synthetic_frames, write_mp4

    clip = write_mp4(tmp_path / "clip.mp4", synthetic_frames(8))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page()
        page.goto(live_server + "/")
        page.set_input_files("#videofile", str(clip))
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('Video ready')", timeout=30000
        )
        page.fill("#frame", "2")
        page.dispatch_event("#frame", "input")
        page.wait_for_function("document.getElementById('frame-label').textContent === 'frame 2'")
        box = page.locator("#overlay").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.4)
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('object(s)')", timeout=30000
        )
        page.screenshot(path=str(tmp_path / "v1-clicked.png"))
        page.click("#propagate")
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('scrub')", timeout=60000
        )
        assert "tracked 6 frame(s)" in page.locator("#status").text_content()
        page.fill("#frame", "6")
        page.dispatch_event("#frame", "input")
        page.wait_for_function("document.getElementById('frame-label').textContent === 'frame 6'")
        page.wait_for_function("Number(document.getElementById('overlay').dataset.maskPixels) > 0")
        page.screenshot(path=str(tmp_path / "v2-frame6.png"))
        assert int(page.locator("#overlay").get_attribute("data-mask-pixels")) > 0
        browser.close()
