"""Text prompts end to end with the tiny Grounding DINO: ``segment/track/batch --text``, the server's
``text`` in segment requests and video prompts, and the page's text box in Chromium."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(1)
    for i in range(3):
        img = rng.integers(0, 80, (90, 140, 3), dtype=np.uint8)
        img[20 + 5 * i : 70, 30:100] = (220, 40, 40)
        Image.fromarray(img).save(root / f"p{i}.png")
    return root


def _common(dino_dir, tiny_checkpoint):
    return ["--detector", str(dino_dir), "--model", "test-tiny", "--checkpoint", str(tiny_checkpoint)]


def test_segment_text(photos, dino_dir, tiny_checkpoint, tmp_path, capsys):
    args = ["segment", str(photos / "p0.png"), "--text", "truck . person", "--box-threshold", "0.3"]
    args += _common(dino_dir, tiny_checkpoint)
    out, coco = tmp_path / "masks", tmp_path / "coco.json"
    assert main([*args, "--out", str(out), "--overlay", str(tmp_path / "o.png"), "--coco", str(coco)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("found ")
    files = sorted(p.name for p in out.iterdir())
    doc = json.loads(coco.read_text())
    assert [c["name"] for c in doc["categories"]] == ["truck", "person"]
    assert len(files) == len(doc["annotations"]) > 0
    assert all(f.endswith(("_truck.png", "_person.png")) for f in files)
    assert Image.open(tmp_path / "o.png").size == (140, 90)
    assert main([*args, "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["phrases"] == ["truck", "person"] and len(result["objects"]) == len(files)
    # nothing found: exit 0 and say so
    assert main([*args[:-6], "--box-threshold", "1", *_common(dino_dir, tiny_checkpoint), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["objects"] == []


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--point", "5,5", "--box-threshold", "0.5"], "goes with --text"),
        (["--text", " . "], "empty text prompt"),
        (["--text", "truck", "--box-threshold", "2"], r"--box-threshold must be in [0, 1]"),
        (["--text", "truck", "--point", "5,5"], "leave out --point"),
        (["--text", "truck", "--head", "h.pt"], "--head or --text, not both"),
    ],
)
def test_segment_text_errors(photos, dino_dir, tiny_checkpoint, tmp_path, capsys, flags, message):
    args = [
        "segment",
        str(photos / "p0.png"),
        *flags,
        "--out",
        str(tmp_path / "m"),
        *_common(dino_dir, tiny_checkpoint),
    ]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_track_and_batch_text(photos, dino_dir, tiny_checkpoint, tmp_path, capsys):
    from videogen import synthetic_frames, write_mp4

    clip = write_mp4(tmp_path / "clip.mp4", synthetic_frames(6))
    args = ["track", str(clip), "--text", "truck . dog", "--detect-every", "3", "--out", str(tmp_path / "t")]
    assert (
        main(
            [*args, "--quiet", "--no-overlay", "--box-threshold", "0.3", *_common(dino_dir, tiny_checkpoint)]
        )
        == 0
    )
    doc = json.loads((tmp_path / "t" / "annotations.json").read_text())
    assert doc["masklet_num"] == len(doc["masklet_label"]) > 0 and set(doc["masklet_label"]) <= {
        "truck",
        "dog",
    }
    assert "tracked" in capsys.readouterr().out
    coco = tmp_path / "coco.json"
    args = [
        "batch",
        str(photos),
        "--out",
        str(tmp_path / "b"),
        "--text",
        "truck",
        "--coco",
        str(coco),
        "--quiet",
    ]
    assert (
        main([*args, "--processes", "1", "--box-threshold", "0.3", *_common(dino_dir, tiny_checkpoint)]) == 0
    )
    doc = json.loads(coco.read_text())
    assert len(doc["images"]) == 3 and [c["name"] for c in doc["categories"]] == ["truck"]
    one = json.loads(next((tmp_path / "b" / "results").rglob("*.json")).read_text())
    assert one["mode"] == "text" and one["phrases"] == ["truck"]
    assert all(a["category"] == "truck" and len(a["box"]) == 4 for a in one["annotations"])
    # a prompt file may mix clicks and text lines
    pf = tmp_path / "prompts.jsonl"
    pf.write_text(
        json.dumps({"image": "p0.png", "points": [[50, 40]]})
        + "\n"
        + json.dumps({"image": "p0.png", "text": "truck"})
        + "\n"
    )
    args = ["batch", str(photos / "p0.png"), "--out", str(tmp_path / "pf"), "--prompts", str(pf), "--quiet"]
    coco = tmp_path / "pf.json"
    more = ["--coco", str(coco), "--processes", "1", "--box-threshold", "0.3"]
    assert main([*args, *more, *_common(dino_dir, tiny_checkpoint)]) == 0
    assert len(json.loads(coco.read_text())["annotations"]) > 1
    anns = json.loads(next((tmp_path / "pf" / "results").rglob("*.json")).read_text())["annotations"]
    assert anns[0]["prompt_index"] == 0 and "points" in anns[0]["prompt"]
    assert len(anns) > 1 and all(
        a["prompt"] == {"text": "truck"} and a["category"] == "truck" for a in anns[1:]
    )
    pf.write_text(json.dumps({"image": "p0.png", "text": " . ", "box": [1, 1, 5, 5]}) + "\n")
    assert main([*args, *_common(dino_dir, tiny_checkpoint)]) == 1
    assert "'text' is a prompt of its own" in capsys.readouterr().err


def test_server_text(photos, dino_dir, tiny_model):
    from fastapi.testclient import TestClient

    from samkit.server import Settings, create_app
    from samkit.text import Detector

    with TestClient(create_app(Settings(model="test-tiny", detector=str(dino_dir)), model=tiny_model)) as c:
        with open(photos / "p1.png", "rb") as f:
            image_id = c.post("/v1/images", files={"file": ("p.png", f, "image/png")}).json()["image_id"]
        r = c.post("/v1/segment", json={"image_id": image_id, "text": "truck . person", "box_threshold": 0.3})
        assert r.status_code == 200, r.text
        masks = r.json()["masks"]
        d = Detector.load(dino_dir).detect(
            [np.array(Image.open(photos / "p1.png"))], ["truck", "person"], 0.3
        )[0]
        assert [m["label"] for m in masks] == d.labels and len(masks) > 0
        np.testing.assert_allclose([m["box"] for m in masks], d.boxes, atol=0.01)
        r = c.post("/v1/segment", json={"image_id": image_id, "text": " . "})
        assert r.status_code == 422 and "empty text prompt" in r.json()["error"]["message"]
        r = c.post("/v1/segment", json={"image_id": image_id, "text": "truck", "box_threshold": 3})
        assert r.status_code == 422
        # a video: the text adds new objects on a frame
        from videogen import synthetic_frames, write_mp4

        clip = write_mp4(photos.parent / "vclip.mp4", synthetic_frames(4))
        with open(clip, "rb") as f:
            vid = c.post("/v1/videos", files={"file": ("c.mp4", f, "video/mp4")}).json()["video_id"]
        r = c.post(f"/v1/videos/{vid}/prompts", json={"frame_idx": 1, "text": "truck", "box_threshold": 0.3})
        assert r.status_code == 200, r.text
        added = r.json()["added"]
        assert [a["obj_id"] for a in added] == list(range(1, len(added) + 1)) and len(added) > 0
        assert {o["obj_id"] for o in r.json()["objects"]} == {a["obj_id"] for a in added}
        r = c.post(f"/v1/videos/{vid}/prompts", json={"frame_idx": 1, "obj_id": 3, "text": "truck"})
        assert r.status_code == 422
    with TestClient(
        create_app(Settings(model="test-tiny", detector=str(photos / "nope")), model=tiny_model)
    ) as c:
        r = c.post("/v1/segment", json={"image": "aGk=", "text": "truck"})
        assert r.status_code in (400, 415, 503)


def test_page_text_box_in_chromium(photos, dino_dir, tiny_model, tmp_path):
    from playwright.sync_api import sync_playwright

    from samkit.server import Settings, create_app
    from server.live import CHROMIUM, FLAGS, serve  # tests/server: the same live server and Chromium

    app = create_app(Settings(model="test-tiny", detector=str(dino_dir)), model=tiny_model)
    with serve(app) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page()
            page.goto(url + "/")
            page.set_input_files("#file", str(photos / "p2.png"))
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('Ready')", timeout=30000
            )
            page.fill("#text", "truck . person")
            page.press("#text", "Enter")
            page.wait_for_function(
                "/^(found|nothing found)/.test(document.getElementById('status').textContent)", timeout=30000
            )
            status = page.locator("#status").text_content()
            page.screenshot(path=str(tmp_path / "text.png"))
            assert status.startswith("found ") and ("truck" in status or "person" in status)
            assert int(page.locator("#overlay").get_attribute("data-mask-pixels")) > 0
            browser.close()
