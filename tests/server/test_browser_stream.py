"""The page's live tab in headless Chromium with its fake camera: Start opens the camera and streams
it to /v1/stream, a click tracks a new object on the live picture, shift-click corrects it, Remove
last and Stop."""

from __future__ import annotations

import json

from samkit.server import ServerConfig, create_app

from .live import CHROMIUM, FLAGS, serve

CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]


def _text(page, id_: str) -> str:
    return page.locator(f"#{id_}").text_content()


def _wait(page, condition: str, timeout: int = 15000) -> None:
    page.wait_for_function(condition, timeout=timeout)


def _frames_at_least(n: int, objects: int) -> str:
    return (
        f"Number(document.getElementById('live-frames').textContent) >= {n} && "
        f"document.getElementById('live-objects').textContent === {json.dumps(str(objects))}"
    )


def _stream_sessions(page) -> int:
    return page.evaluate("fetch('/healthz').then((r) => r.json()).then((h) => h.stream_sessions)")


def test_live_tab_tracks_the_camera_in_chromium(tiny_model, tmp_path):
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    app = create_app(ServerConfig(model="test-tiny", api_key="s3cret"), model=tiny_model)
    with serve(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS + CAMERA, headless=True)
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        # without the key the server refuses the stream, and the page says why
        page.click("#live-start")
        _wait(page, "document.getElementById('status').textContent.includes('unauthorized')")
        assert page.locator("#live-start").is_enabled()
        page.fill("#apikey", "s3cret")
        page.click("#live-start")
        _wait(page, _frames_at_least(2, 0))
        assert page.locator("#live-stop").is_enabled() and page.locator("#live-start").is_disabled()
        size = page.evaluate(
            "[document.getElementById('overlay').width, document.getElementById('overlay').height]"
        )
        assert 0 < min(size) and max(size) <= 640, size
        assert _stream_sessions(page) == 1

        # a click on the live picture: object 1, tracked on the frames after it
        box = page.locator("#overlay").bounding_box()
        page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        _wait(page, _frames_at_least(1, 1))
        start = int(_text(page, "live-frames"))
        _wait(page, _frames_at_least(start + 3, 1))
        assert float(_text(page, "live-fps")) > 0 and _text(page, "live-next") == "2"
        # its mask is painted over the picture (the tiny test model's masks are large)
        assert int(page.evaluate("document.getElementById('overlay').dataset.maskPixels")) > 0
        page.screenshot(path=str(tmp_path / "live-object.png"))
        # shift-click: background on the last object, still one object
        page.keyboard.down("Shift")
        page.mouse.click(box["x"] + 5, box["y"] + 5)
        page.keyboard.up("Shift")
        start = int(_text(page, "live-frames"))
        _wait(page, _frames_at_least(start + 2, 1))
        assert _text(page, "live-next") == "2"  # no new object

        # Remove last: no object on the next frames
        page.click("#live-remove")
        start = int(_text(page, "live-frames"))
        _wait(page, _frames_at_least(start + 2, 0))
        assert page.locator("#live-remove").is_disabled()

        # Stop: camera and socket closed, the server's session freed
        frames = int(_text(page, "live-frames"))
        page.click("#live-stop")
        assert _text(page, "status").startswith("Live stopped after")
        assert int(_text(page, "status").split()[3]) >= frames
        # (a predicate cannot wait on a promise: each poll asks /healthz, the next one reads the answer)
        page.wait_for_function(
            """() => {
                fetch('/healthz').then((r) => r.json()).then((h) => { window.streamSessions = h.stream_sessions; });
                return window.streamSessions === 0;
            }""",
            polling=100,
            timeout=15000,
        )
        assert page.locator("#live-start").is_enabled()
        assert not page.evaluate("document.getElementById('status').textContent.startsWith('Error')")
        browser.close()
    assert errors == []
