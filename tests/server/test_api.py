"""The JSON API through FastAPI's TestClient, on the tiny config."""

from __future__ import annotations

import base64
import io
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import samkit
from samkit import rle
from samkit.server import ServerConfig, create_app


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 60, (90, 140, 3), dtype=np.uint8)
    img[20:60, 30:80] = (220, 30, 30)
    return img


@pytest.fixture()
def client(tiny_model, tmp_path):
    app = create_app(
        ServerConfig(
            model="test-tiny",
            cache_dir=str(tmp_path / "cache"),
            max_upload_bytes=2_000_000,
            max_pixels=4_000_000,
            api_key=None,
        ),
        model=tiny_model,
    )
    with TestClient(app) as c:
        yield c


def upload(client, arr, **kw):
    return client.post("/v1/images", files={"file": ("x.png", png_bytes(arr), "image/png")}, **kw)


def test_health(client):
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["model"] == "test-tiny"


def test_upload_then_cached(client, photo):
    r = upload(client, photo)
    assert r.status_code == 200
    info = r.json()
    import hashlib

    assert info["image_id"] == hashlib.sha256(png_bytes(photo)).hexdigest()
    assert (info["width"], info["height"], info["cached"]) == (140, 90, False)
    assert upload(client, photo).json()["cached"] is True
    assert client.get("/healthz").json()["embeddings_cached"] == 1


def test_segment_equals_image_predictor(client, photo, tiny_model):
    image_id = upload(client, photo).json()["image_id"]
    r = client.post(
        "/v1/segment", json={"image_id": image_id, "points": [[50, 40]], "labels": [1], "multimask": True}
    )
    assert r.status_code == 200, r.text
    masks = r.json()["masks"]
    assert len(masks) == 3 and [m["score"] for m in masks] == sorted(
        (m["score"] for m in masks), reverse=True
    )
    p = samkit.ImagePredictor(tiny_model)
    p.set_image(photo)
    ref, scores, _ = p.predict(point_coords=[[50, 40]], point_labels=[1])
    best = int(np.argmax(scores))
    np.testing.assert_array_equal(rle.decode(masks[0]["rle"]), ref[best] > 0)
    assert masks[0]["area"] == int(ref[best].sum())
    # refine from a previous mask, without resending logits
    r2 = client.post(
        "/v1/segment",
        json={
            "image_id": image_id,
            "points": [[50, 40], [5, 5]],
            "labels": [1, 0],
            "multimask": False,
            "mask_from": masks[0]["mask_id"],
            "output": "png",
        },
    )
    assert r2.status_code == 200 and len(r2.json()["masks"]) == 1
    png = Image.open(io.BytesIO(base64.b64decode(r2.json()["masks"][0]["png"])))
    assert png.size == (140, 90)


def test_clicks_on_one_image_reuse_its_prepared_decoder_side(client, photo, tiny_model, monkeypatch):
    # the decoder's per-image side is prepared on the first click only, and later clicks (and clicks
    # after the image's predictor was dropped from the engine's cache) give the same masks
    from samkit.modeling.mask_decoder import MaskDecoder

    calls = []
    real = MaskDecoder.prepare_image
    monkeypatch.setattr(
        MaskDecoder, "prepare_image", lambda self, *a, **k: calls.append(1) or real(self, *a, **k)
    )
    engine = client.app.state.engine
    image_id = upload(client, photo).json()["image_id"]
    body = {"image_id": image_id, "points": [[50, 40]], "labels": [1]}
    first = client.post("/v1/segment", json=body).json()["masks"]
    again = client.post("/v1/segment", json={**body, "points": [[52, 41]]}).json()["masks"]
    assert len(calls) == 1 and engine.predictors.get(image_id) is not None
    assert again[0]["rle"] != first[0]["rle"] or again[0]["score"] != first[0]["score"]
    for i in range(engine.PREDICTORS_KEPT):  # push it out with other images
        other = photo.copy()
        other[0, 0] = i
        other_id = upload(client, other).json()["image_id"]
        assert client.post("/v1/segment", json={**body, "image_id": other_id}).status_code == 200
    assert engine.predictors.get(image_id) is None
    later = client.post("/v1/segment", json=body).json()["masks"]
    assert len(calls) == 2 + engine.PREDICTORS_KEPT

    def without_ids(masks):
        return [{k: v for k, v in m.items() if k != "mask_id"} for m in masks]

    assert without_ids(later) == without_ids(first)


def test_inline_base64_image(client, photo):
    b64 = base64.b64encode(png_bytes(photo)).decode()
    r = client.post("/v1/segment", json={"image": b64, "box": [10, 10, 100, 80], "multimask": False})
    assert r.status_code == 200 and len(r.json()["masks"]) == 1


def test_disk_cache_survives_restart(tiny_model, tmp_path, photo):
    cfg = ServerConfig(model="test-tiny", cache_dir=str(tmp_path / "c"))
    with TestClient(create_app(cfg, model=tiny_model)) as c:
        assert upload(c, photo).json()["cached"] is False
    with TestClient(create_app(cfg, model=tiny_model)) as c:
        assert upload(c, photo).json()["cached"] is True  # read from disk, not re-encoded


def test_automatic(client, photo):
    image_id = upload(client, photo).json()["image_id"]
    r = client.post(
        "/v1/automatic",
        json={"image_id": image_id, "points_per_side": 4, "pred_iou_thresh": 0, "stability_score_thresh": 0},
    )
    assert r.status_code == 200, r.text
    anns = r.json()["annotations"]
    assert len(anns) > 0 and all(set(a["segmentation"]) == {"size", "counts"} for a in anns)


def png_header_only(w: int, h: int) -> bytes:
    """A PNG whose header claims w x h pixels (a decompression bomb's first bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))


@pytest.mark.parametrize(
    "payload, status, code",
    [
        (b"garbage bytes, not an image", 415, "unsupported_image"),
        (b"", 400, "empty_image"),
        ("truncated", 400, "corrupt_image"),
        ("bomb", 413, "image_too_large"),
        ("huge", 413, "upload_too_large"),
    ],
)
def test_bad_uploads(client, photo, payload, status, code):
    if payload == "truncated":
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, format="JPEG")
        payload = buf.getvalue()[:300]
    elif payload == "bomb":
        payload = png_header_only(20000, 20000)
    elif payload == "huge":
        payload = b"\x00" * 2_000_001
    r = client.post("/v1/images", files={"file": ("x", payload, "application/octet-stream")})
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    assert client.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    "body, status",
    [
        ({"image_id": "nope", "points": [[1, 1]], "labels": [1]}, 404),
        ({"points": [[1, 1]], "labels": [1]}, 400),
        ({"image_id": "x", "points": [[1, 1]], "labels": [1, 0]}, 422),
        ({"image_id": "x", "points": [[1]], "labels": [1]}, 422),
        ({"image_id": "x", "points": [[1, 1]], "labels": [7]}, 422),
        ({"image_id": "x", "box": [1, 2, 3]}, 422),
        ({"image_id": "x"}, 422),
        ({"image": "%%%notbase64", "points": [[1, 1]], "labels": [1]}, 400),
        ({"image_id": "x", "points": [[1, 1]], "labels": [1], "unknown": 1}, 422),
    ],
)
def test_bad_segment_requests(client, body, status):
    r = client.post("/v1/segment", json=body)
    assert r.status_code == status, r.text
    assert set(r.json()["error"]) == {"code", "message"}


def test_nan_coordinates_rejected(client, photo):
    image_id = upload(client, photo).json()["image_id"]
    r = client.post(
        "/v1/segment",
        content=b'{"image_id": "%s", "points": [[NaN, 1]], "labels": [1]}' % image_id.encode(),
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and "error" in r.json()


def test_unknown_mask_id(client, photo):
    image_id = upload(client, photo).json()["image_id"]
    r = client.post(
        "/v1/segment", json={"image_id": image_id, "points": [[1, 1]], "labels": [1], "mask_from": "x"}
    )
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_mask"


def test_api_key(tiny_model, photo):
    with TestClient(create_app(ServerConfig(model="test-tiny", api_key="s3cret"), model=tiny_model)) as c:
        assert c.get("/healthz").status_code == 200
        assert upload(c, photo).status_code == 401
        ok = upload(c, photo, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert upload(c, photo, headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_concurrent_segments_identical(client, photo):
    image_id = upload(client, photo).json()["image_id"]
    body = {"image_id": image_id, "points": [[50, 40]], "labels": [1]}
    with ThreadPoolExecutor(8) as ex:
        results = list(ex.map(lambda _: client.post("/v1/segment", json=body), range(50)))
    assert all(r.status_code == 200 for r in results)
    first = [m["rle"] for m in results[0].json()["masks"]]
    assert all([m["rle"] for m in r.json()["masks"]] == first for r in results)


def test_concurrent_uploads_are_micro_batched(tiny_model):
    cfg = ServerConfig(model="test-tiny", max_batch=4, max_wait_ms=200)
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (40, 50, 3), dtype=np.uint8) for _ in range(8)]
    with TestClient(create_app(cfg, model=tiny_model)) as c:
        with ThreadPoolExecutor(8) as ex:
            results = list(ex.map(lambda im: upload(c, im), images))
        engine = c.app.state.engine
        assert all(r.status_code == 200 for r in results)
        assert engine.images_encoded == 8 and engine.batches_run < 8
        # batched embeddings equal one-by-one ones
        p = samkit.ImagePredictor(tiny_model)
        p.set_image(images[3])
        emb = engine.lookup(results[3].json()["image_id"])
        np.testing.assert_allclose(
            emb.image_embed.numpy(), p.get_image_embedding().numpy(), rtol=1e-4, atol=1e-5
        )


def test_full_queue_answers_503(tiny_model, photo, monkeypatch):
    from samkit.server import state

    cfg = ServerConfig(model="test-tiny", max_queue=1)
    with TestClient(create_app(cfg, model=tiny_model)) as c:
        engine = c.app.state.engine
        monkeypatch.setattr(
            engine._queue, "put_nowait", lambda item: (_ for _ in ()).throw(state.queue.Full())
        )
        r = upload(c, photo)
        assert (
            r.status_code == 503 and r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "busy"
        )


def test_openapi_docs(client):
    assert client.get("/docs").status_code == 200
    assert "/v1/segment" in client.get("/openapi.json").json()["paths"]


def test_compiled_model_is_warmed_up_at_start_and_segments_the_same(tiny_checkpoint, photo, monkeypatch):
    """`serve --fast` loads with compile=True: the lifespan compiles the mask upsampling before the
    first request, and the server's masks stay the eager path's."""
    import samkit.server.app as server_app

    warmed = []
    real = server_app.warm_up_compiled
    monkeypatch.setattr(server_app, "warm_up_compiled", lambda: warmed.append(real()))
    model = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu", compile=True)
    with TestClient(create_app(ServerConfig(model="test-tiny", api_key=None), model=model)) as c:
        assert warmed == [True]
        image_id = upload(c, photo).json()["image_id"]
        body = {"image_id": image_id, "points": [[50, 40]], "labels": [1], "multimask": True}
        masks = c.post("/v1/segment", json=body).json()["masks"]
    p = samkit.ImagePredictor(samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu"))
    p.set_image(photo)
    logits, scores, _ = p.predict(point_coords=[[50, 40]], point_labels=[1], return_logits=True)
    best = logits[int(np.argmax(scores))]
    got = rle.decode(masks[0]["rle"])
    assert not ((got != (best > 0)) & (np.abs(best) > 1e-4)).any()
    # a plain model's server does not compile
    warmed.clear()
    with TestClient(create_app(ServerConfig(model="test-tiny", api_key=None), model=p.model)):
        assert warmed == []


def test_health_includes_the_models_policy(client, tiny_model):
    policy = client.get("/healthz").json()["policy"]
    assert policy == tiny_model.policy.as_dict()
    assert policy["device"] == "cpu" and policy["precision"] == "fp32"
