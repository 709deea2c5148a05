"""Heads end to end: ``samkit train-head``, ``segment --head``, ``batch --head`` (COCO categories,
instances), the server's ``"head": true`` and the page's Auto button, on the tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from samkit.cli import main
from samkit.heads import PromptFreeHead


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_checkpoint):
    from samkit.train.synthetic import write_coco_shapes

    root = tmp_path_factory.mktemp("head")
    ann, images = write_coco_shapes(8, root, size=96, seed=2)
    out = root / "shapes-head.pt"
    args = ["train-head", "--data", f"coco:{ann}:{images}", "--classes", "disc,rect", "--out", str(out)]
    args += ["--model", "test-tiny", "--checkpoint", str(tiny_checkpoint), "--epochs", "2", "--no-progress"]
    args += ["--cache", str(root / "cache")]
    assert main(args) == 0
    return out, images


def test_train_head_cli(trained, tiny_checkpoint, capsys):
    out, _ = trained
    head = PromptFreeHead.load(out)
    assert (
        head.classes == ["disc", "rect"] and head.variant == "test-tiny" and len(head.checkpoint_sha256) == 64
    )
    assert out.stat().st_size < tiny_checkpoint.stat().st_size
    assert (out.parent / "shapes-head.pt.last.pt").is_file()


def test_train_head_bad_input(tmp_path, tiny_checkpoint, trained, capsys):
    _, images = trained
    ann = images.parent / "annotations.json"
    common = ["--model", "test-tiny", "--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "h.pt")]
    assert main(["train-head", "--data", f"coco:{ann}:{images}", "--classes", "car", *common]) == 1
    assert "unknown category 'car'" in capsys.readouterr().err
    assert (
        main(["train-head", "--data", f"coco:{ann}:{images}", "--classes", "disc", "--lr", "0", *common]) == 1
    )
    assert "lr must be > 0" in capsys.readouterr().err


def test_segment_with_head(trained, tiny_checkpoint, tmp_path, capsys):
    out, images = trained
    photo = images / "00000.jpg"
    args = ["segment", str(photo), "--head", str(out), "--checkpoint", str(tiny_checkpoint)]
    mask, overlay, coco = tmp_path / "m.png", tmp_path / "o.png", tmp_path / "c.json"
    assert (
        main([*args, "--out", str(mask), "--overlay", str(overlay), "--coco", str(coco), "--instances"]) == 0
    )
    labels = np.array(Image.open(mask))
    assert labels.shape == (96, 96) and set(np.unique(labels)) <= {0, 1, 2}
    doc = json.loads(coco.read_text())
    assert [c["name"] for c in doc["categories"]] == ["disc", "rect"]
    assert all(a["category_id"] in (1, 2) and "category" not in a for a in doc["annotations"])
    capsys.readouterr()
    assert main([*args, "--class", "rect", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [c["class"] for c in printed["classes"]] == ["rect"]
    # errors: a class the head lacks, another model, a prompt
    assert main([*args, "--class", "car", "--out", str(mask)]) == 1
    assert "no class 'car'; its classes: disc, rect" in capsys.readouterr().err
    assert main([*args, "--model", "sam2.1-hiera-tiny", "--out", str(mask)]) == 1
    assert "trained on test-tiny, not sam2.1-hiera-tiny" in capsys.readouterr().err
    assert main([*args, "--point", "5,5", "--out", str(mask)]) == 1
    assert "no prompt" in capsys.readouterr().err
    assert main(["segment", str(photo), "--point", "5,5", "--instances", "--out", str(mask)]) == 1
    assert "--instances goes with --head" in capsys.readouterr().err


def test_batch_with_head(trained, tiny_checkpoint, tmp_path, capsys):
    out, images = trained
    coco = tmp_path / "coco.json"
    args = [
        "batch",
        str(images),
        "--out",
        str(tmp_path / "r"),
        "--head",
        str(out),
        "--checkpoint",
        str(tiny_checkpoint),
    ]
    assert main([*args, "--coco", str(coco), "--instances", "--quiet", "--processes", "1"]) == 0
    doc = json.loads(coco.read_text())
    assert len(doc["images"]) == 8 and [c["name"] for c in doc["categories"]] == ["disc", "rect"]
    one = json.loads(next((tmp_path / "r" / "results").rglob("*.json")).read_text())
    assert one["mode"] == "head" and all(a["category"] in ("disc", "rect") for a in one["annotations"])


def test_server_head(trained, tiny_model):
    from fastapi.testclient import TestClient

    from samkit.server import Settings, create_app

    out, images = trained
    head = PromptFreeHead.load(out)
    with TestClient(create_app(Settings(model="test-tiny"), model=tiny_model, head=head)) as c:
        assert c.get("/healthz").json()["head"] == {"kind": "tokens", "classes": ["disc", "rect"]}
        with open(images / "00001.jpg", "rb") as f:
            image_id = c.post("/v1/images", files={"file": ("a.jpg", f, "image/jpeg")}).json()["image_id"]
        r = c.post("/v1/segment", json={"image_id": image_id, "head": True}).json()
        assert [m["label"] for m in r["masks"]] == ["disc", "rect"]
        pred = head.predict(_predictor(tiny_model, images / "00001.jpg"))[0]
        from samkit import rle

        assert np.array_equal(rle.decode(r["masks"][1]["rle"]), pred[1])
        r = c.post("/v1/segment", json={"image_id": image_id, "head": True, "classes": ["car"]})
        assert r.status_code == 422 and "no class 'car'" in r.json()["error"]["message"]
    with TestClient(create_app(Settings(model="test-tiny"), model=tiny_model)) as c:
        assert c.get("/healthz").json()["head"] is None
        r = c.post("/v1/segment", json={"image": "aGk=", "head": True})
        assert r.status_code == 409


def _predictor(model, path):
    from samkit import ImagePredictor

    p = ImagePredictor(model)
    p.set_image(np.array(Image.open(path).convert("RGB")))
    return p


def test_page_auto_button_in_chromium(trained, tiny_model, tmp_path):
    from playwright.sync_api import sync_playwright

    from samkit.server import Settings, create_app
    from server.live import CHROMIUM, FLAGS, serve  # tests/server: the same live server and Chromium

    out, images = trained

    app = create_app(Settings(model="test-tiny"), model=tiny_model, head=PromptFreeHead.load(out))
    with serve(app) as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
            page = browser.new_page(accept_downloads=True)
            page.goto(url + "/")
            page.wait_for_function("document.getElementById('head-auto').textContent === 'Auto: disc, rect'")
            page.set_input_files("#file", str(images / "00002.jpg"))
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('Ready')", timeout=30000
            )
            page.click("#head-auto")
            page.wait_for_function(
                "document.getElementById('status').textContent.startsWith('disc:')", timeout=30000
            )
            page.screenshot(path=str(tmp_path / "head.png"))
            with page.expect_download() as dl:
                page.click("#download-coco")
            path = tmp_path / "annotations.json"
            dl.value.save_as(path)
            doc = json.loads(path.read_text())
            assert [c["name"] for c in doc["categories"]] == ["disc", "rect"] and "head" not in doc
            browser.close()
