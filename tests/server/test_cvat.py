"""CVAT's AI tools against samkit: requests shaped as CVAT's serverless interactor and tracker send
them (base64 image, pos_points/neg_points; shapes/states), answers checked against samkit itself."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import samkit
from samkit.server import ServerConfig, create_app
from samkit.transforms import decode_image
from videogen import synthetic_frames

FRAMES = synthetic_frames(5)  # 96x72


def b64(frame: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture()
def client(tiny_model):
    with TestClient(
        create_app(ServerConfig(model="test-tiny", api_key="k", integrations=("cvat",)), model=tiny_model)
    ) as c:
        c.headers["Authorization"] = "Bearer k"
        yield c


def test_interactor_returns_the_best_mask_as_cvat_expects(client, tiny_model):
    body = {
        "image": b64(FRAMES[0]),
        "pos_points": [[15, 30], [20, 28]],
        "neg_points": [[80, 10]],
        "threshold": 0.5,
    }
    r = client.post("/cvat/interactor", json=body)
    assert r.status_code == 200, r.text
    mask = np.array(r.json()["mask"])
    assert mask.dtype == bool and mask.shape == (72, 96)
    pred = samkit.ImagePredictor(tiny_model)
    pred.set_image(decode_image(base64.b64decode(body["image"])))
    masks, scores, _ = pred.predict(
        point_coords=[[15, 30], [20, 28], [80, 10]], point_labels=[1, 1, 0], multimask_output=False
    )
    np.testing.assert_array_equal(mask, masks[np.argmax(scores)] > 0)
    # a box (CVAT's obj_bbox, corners in any order) alone is enough
    r = client.post("/cvat/interactor", json={"image": body["image"], "obj_bbox": [[90, 60], [60, 30]]})
    assert r.status_code == 200 and np.array(r.json()["mask"]).shape == (72, 96)


def test_tracker_starts_and_moves_tracks(client, tiny_model):
    shapes = [[60.0, 30.0, 90.0, 60.0], [5.0, 20.0, 25.0, 20.0, 25.0, 40.0, 5.0, 40.0]]  # a box, a polygon
    r = client.post("/cvat/tracker", json={"image": b64(FRAMES[0]), "shapes": shapes, "states": [None, None]})
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["shapes"] == [[60.0, 30.0, 90.0, 60.0], [5.0, 20.0, 25.0, 40.0]]
    states = got["states"]
    local = [samkit.StreamTracker(tiny_model) for _ in shapes]
    frames = [decode_image(base64.b64decode(b64(f))) for f in FRAMES[:3]]
    for s, box in zip(local, got["shapes"]):
        s.track(frames[0], {1: {"box": box}})
    for i in (1, 2):
        r = client.post(
            "/cvat/tracker", json={"image": b64(FRAMES[i]), "shapes": got["shapes"], "states": states}
        )
        assert r.status_code == 200, r.text
        got = r.json()
        assert got["states"] == states  # the same tracks
        for s, shape in zip(local, got["shapes"]):
            m = s.track(frames[i])[1]
            ys, xs = np.nonzero(m)
            want = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if m.any() else None
            assert want is None or shape == [float(v) for v in want]


@pytest.mark.parametrize(
    "path, body, status, fragment",
    [
        ("/cvat/interactor", {"image": "@@@", "pos_points": [[1, 1]]}, 400, "base64"),
        ("/cvat/interactor", {"image": "", "neg_points": [[1, 1]]}, 422, "positive point"),
        ("/cvat/interactor", {"image": "FRAME", "pos_points": [[500, 1]]}, 422, "outside"),
        ("/cvat/interactor", {"image": "FRAME", "obj_bbox": [[1, 1]]}, 422, "obj_bbox"),
        (
            "/cvat/tracker",
            {"image": "FRAME", "shapes": [[1, 1, 5, 5]], "states": []},
            422,
            "1 shapes but 0 states",
        ),
        ("/cvat/tracker", {"image": "FRAME", "shapes": [[1, 1, 5]], "states": [None]}, 422, "a shape is"),
        (
            "/cvat/tracker",
            {"image": "FRAME", "shapes": [[1, 1, 5, 5]], "states": [{"samkit_track": "x"}]},
            404,
            "expired",
        ),
        (
            "/cvat/tracker",
            {"image": base64.b64encode(b"no image").decode(), "shapes": [[1, 1, 5, 5]]},
            400,
            "bad_image",
        ),
    ],
)
def test_bad_requests_are_4xx_with_a_message(client, path, body, status, fragment):
    body = {k: (b64(FRAMES[0]) if v == "FRAME" else v) for k, v in body.items()}
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert fragment in r.text


def test_the_api_key_is_required(client):
    r = client.post(
        "/cvat/interactor",
        json={"image": b64(FRAMES[0]), "pos_points": [[1, 1]]},
        headers={"Authorization": ""},
    )
    assert r.status_code == 401


def test_integrations_are_off_unless_named(tiny_model):
    from samkit.cli import build_parser
    from samkit.cli.serve import settings_from_args

    with TestClient(create_app(ServerConfig(model="test-tiny"), model=tiny_model)) as c:
        assert (
            c.post("/cvat/interactor", json={"image": b64(FRAMES[0]), "pos_points": [[5, 5]]}).status_code
            == 404
        )
        assert c.get("/label-studio/health").status_code == 404
    args = build_parser().parse_args(["serve", "--integrations", "cvat,label-studio", "--model", "test-tiny"])
    assert settings_from_args(args).integrations == ("cvat", "label-studio")
