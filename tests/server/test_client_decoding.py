"""Client-side decoding: the server hands out its decoder (ONNX) and float16 embeddings with ETags; the
decoder run on them in onnxruntime gives the server's masks; in headless Chromium the page decodes a
click with onnxruntime-web, draws the server's mask (IoU >= 0.99) and sends no segment request."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import samkit.checkpoints
from samkit import rle
from samkit.server import ServerConfig, create_app
from samkit.server.routes.client import embedding_array
from samkit.server.vendor import ORT_WEB_FILES, ort_web_present

from .live import CHROMIUM, FLAGS, serve

ort = pytest.importorskip("onnxruntime")  # in the test extra: never skipped there


def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (120, 160, 3), dtype=np.uint8)
    img[30:90, 40:120] = (220, 40, 40)
    img[95:115, 10:50] = (40, 200, 60)
    return img


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def client(tiny_model):
    app = create_app(ServerConfig(model="test-tiny", api_key="k", client_decoding=True), model=tiny_model)
    with TestClient(app) as c:
        c.headers["Authorization"] = "Bearer k"
        yield c


def iou(a, b) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_decoder_and_embedding_give_the_servers_masks(client):
    assert client.get("/healthz").json()["client_decoding"] is True
    info = client.get("/v1/decoder").json()
    assert info["image_size"] == 128 and info["embedding"]["dtype"] == "float16"
    image_id = client.post("/v1/images", files={"file": ("p.png", png(photo()))}).json()["image_id"]

    r = client.get("/v1/decoder.onnx")
    assert r.status_code == 200 and r.headers["etag"]
    assert client.get("/v1/decoder.onnx", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    dec = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"])

    e = client.get(f"/v1/images/{image_id}/embedding")
    assert e.status_code == 200 and e.headers["etag"] and "max-age" in e.headers["cache-control"]
    assert (
        client.get(
            f"/v1/images/{image_id}/embedding", headers={"If-None-Match": e.headers["etag"]}
        ).status_code
        == 304
    )
    feeds = embedding_array(e.content, info["embedding"]["shapes"])
    assert len(e.content) == 2 * sum(v.size for v in feeds.values())  # float16: half of float32

    for points, labels in (([[80, 60]], [1]), ([[80, 60], [20, 100]], [1, 0])):
        single = len(points) > 1
        want = client.post(
            "/v1/segment",
            json={"image_id": image_id, "points": points, "labels": labels, "multimask": not single},
        ).json()["masks"]
        out = dict(
            zip(
                [o.name for o in dec.get_outputs()],
                dec.run(
                    None,
                    {
                        **feeds,
                        "point_coords": (np.array([points]) * [128 / 160, 128 / 120]).astype(np.float32),
                        "point_labels": np.array([labels], np.float32),
                        "mask_input": np.zeros((1, 1, 32, 32), np.float32),
                        "has_mask_input": np.zeros(1, np.float32),
                        "orig_im_size": np.array([120, 160], np.float32),
                    },
                ),
            )
        )
        if single:
            import torch

            low = torch.from_numpy(out["single_low_res_mask"])
            got = [torch.nn.functional.interpolate(low, size=(120, 160), mode="bilinear")[0, 0].numpy() > 0]
            scores = out["single_iou"][0]
        else:
            scores = out["iou_predictions"][0]
            got = [out["masks"][0, i] > 0 for i in np.argsort(-scores, kind="stable")]
            scores = np.sort(scores)[::-1]
        assert len(got) == len(want)
        for g, w, s in zip(got, want, scores):
            assert abs(s - w["score"]) < 1e-2
            assert iou(g, rle.decode(w["rle"])) >= 0.99


def test_client_decoding_errors(client, tiny_model):
    assert client.get("/v1/images/nope/embedding").json()["error"]["code"] == "unknown_image"
    # an embedding asked for another model's decoder
    image_id = client.post("/v1/images", files={"file": ("p.png", png(photo()))}).json()["image_id"]
    weights = client.get("/v1/decoder").json()["weights"]
    assert weights == samkit.checkpoints.weights_sha256(tiny_model)[:16]
    r = client.get(f"/v1/images/{image_id}/embedding", params={"weights": "0123456789abcdef"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "model_mismatch"
    assert client.get(f"/v1/images/{image_id}/embedding", params={"weights": weights}).status_code == 200
    assert client.get("/v1/decoder", headers={"Authorization": ""}).status_code == 401
    # (encoded, so that the client does not normalise the dots away before the route sees them)
    for name in ("..%2F..%2Fconfig.py", "..%2Fvendor.py", "%2E%2E%2Fvendor.py"):
        r = client.get(f"/static/ort/{name}")
        assert r.status_code == 404 and "import" not in r.text, name
    assert client.get("/static/ort/secret.txt").status_code == 404
    with TestClient(create_app(ServerConfig(model="test-tiny"), model=tiny_model)) as off:
        assert off.get("/healthz").json()["client_decoding"] is False
        assert off.get("/v1/decoder.onnx").json()["error"]["code"] == "client_decoding_off"


def test_onnxruntime_web_is_shipped(client):
    assert ort_web_present(), "run python -m samkit.server.vendor (scripts/test.sh does)"
    assert len(ORT_WEB_FILES) == 6  # the WASM and WebGPU backends
    for name in ORT_WEB_FILES:
        media = "application/wasm" if name.endswith(".wasm") else "text/javascript"
        r = client.get(f"/static/ort/{name}", headers={"Authorization": ""})  # no key, like the page
        assert r.status_code == 200 and r.headers["content-type"].startswith(media) and len(r.content) > 1000


# Chromium without a GPU has no WebGPU adapter (the WASM backend); with SwiftShader's it has one
WEBGPU_FLAGS = [f for f in FLAGS if f != "--disable-gpu"] + [
    "--enable-unsafe-webgpu",
    "--use-webgpu-adapter=swiftshader",
]


@pytest.mark.parametrize("backend, flags", [("WASM", FLAGS), ("WebGPU", WEBGPU_FLAGS)])
def test_page_decodes_clicks_in_chromium(tiny_model, tmp_path, backend, flags):
    from playwright.sync_api import sync_playwright

    path = tmp_path / "photo.png"
    path.write_bytes(png(photo()))
    app = create_app(ServerConfig(model="test-tiny", client_decoding=True), model=tiny_model)
    errors: list[str] = []
    requests: list[str] = []
    with serve(app) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=flags, headless=True)
        page = browser.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url + "/")
        page.set_input_files("#file", str(path))
        page.wait_for_function(
            "document.getElementById('status').textContent.startsWith('Ready')", timeout=90000
        )
        status = page.locator("#status").text_content()
        assert f"decoded in the browser ({backend})" in status, status
        page.on("request", lambda r: requests.append(r.url))
        box = page.locator("#overlay").bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
        page.wait_for_function(
            "document.getElementById('status').textContent.includes('mask(s)')", timeout=60000
        )
        assert f"decoded in the browser, {backend}" in page.locator("#status").text_content()
        assert page.locator("#candidates button").count() == 3
        image_id, points = page.evaluate("[state.imageId, state.points]")
        # the page describes its masks as the server does (COCO RLE, area, bbox: the COCO download)
        records = page.evaluate("state.masks.map((m) => ({rle: m.rle, area: m.area, bbox: m.bbox}))")
        got = [
            np.array(m, bool).reshape(120, 160)
            for m in page.evaluate("state.masks.map((m) => Array.from(m.mask))")
        ]
        # a background click: one mask, refined from the one shown
        page.mouse.click(box["x"] + 5, box["y"] + 5, button="right")
        page.wait_for_function("document.querySelectorAll('#candidates button').length === 1", timeout=60000)
        refined = np.array(page.evaluate("Array.from(state.masks[0].mask)"), bool).reshape(120, 160)
        refined_points, labels = page.evaluate("[state.points, state.labels]")
        browser.close()
    assert not errors, errors
    assert not [u for u in requests if "/v1/" in u], requests  # no request per click
    with TestClient(app) as c:
        c.post("/v1/images", files={"file": ("p.png", png(photo()))})
        r = c.post("/v1/segment", json={"image_id": image_id, "points": points, "labels": [1]}).json()
        for g, w, rec in zip(got, r["masks"], records):
            assert iou(g, rle.decode(w["rle"])) >= 0.99
            np.testing.assert_array_equal(rle.decode(rec["rle"]), g)
            assert rec["area"] == g.sum() and rec["bbox"] == rle.bbox(g)
        assert int(got[0].sum()) > 0
        first = r["masks"][0]["mask_id"]
        r = c.post(
            "/v1/segment",
            json={
                "image_id": image_id,
                "points": refined_points,
                "labels": labels,
                "multimask": False,
                "mask_from": first,
            },
        ).json()
        assert iou(refined, rle.decode(r["masks"][0]["rle"])) >= 0.99
