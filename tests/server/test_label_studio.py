"""Label Studio's ML backend against samkit: /health, /setup and /predict with requests shaped as
Label Studio sends them (interactive context in percent, tasks with image URLs), brush RLE back."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from fastapi.testclient import TestClient

import samkit
from samkit.server import ServerConfig, create_app
from samkit.server.routes.label_studio import brush_rle, brush_rle_decode
from samkit.transforms import decode_image
from videogen import synthetic_frames

from .payloads import data_uri

FRAME = synthetic_frames(1)[0]  # 96x72
CONFIG = """<View><Image name="img" value="$image"/>
<BrushLabels name="brush" toName="img"><Label value="Car"/></BrushLabels>
<KeyPointLabels name="kp" toName="img" smart="true"><Label value="Car"/></KeyPointLabels></View>"""


@pytest.fixture()
def client(tiny_model):
    with TestClient(
        create_app(
            ServerConfig(model="test-tiny", api_key="k", integrations=("label-studio",)), model=tiny_model
        )
    ) as c:
        # Label Studio can only send basic auth: any user, the key as password
        c.headers["Authorization"] = "Basic " + base64.b64encode(b"ls:k").decode()
        yield c


def test_brush_rle_layout_and_round_trip():
    # one pixel: 4 RGBA values of 255 -> header (32-bit count 4, word size 8, run widths 3/4/8/16), then
    # one repeated run: flag 1, width index 00, length - 1 = 3 in 3 bits, value 11111111
    bits = f"{4:032b}" + "00111" + "0010" + "0011" + "0111" + "1111" + "1" + "00" + "011" + "11111111"
    bits += "0" * (-len(bits) % 8)
    assert brush_rle(np.ones((1, 1), bool)) == [int(bits[i : i + 8], 2) for i in range(0, len(bits), 8)]
    rng = np.random.default_rng(0)
    for mask in (
        rng.random((40, 50)) > 0.5,
        np.zeros((30, 20), bool),
        np.ones((300, 300), bool),  # runs longer than 2**16 values are split
        np.pad(np.ones((100, 200), bool), ((50, 150), (7, 3))),
    ):
        assert np.array_equal(brush_rle_decode(brush_rle(mask), *mask.shape), mask)


def test_health_and_setup(client):
    assert client.get("/label-studio/health").json()["status"] == "UP"
    r = client.post(
        "/label-studio/setup",
        json={"project": "1.17", "schema": CONFIG, "hostname": "http://ls:8080", "access_token": "t"},
    )
    assert r.status_code == 200 and r.json() == {"model_version": "samkit"}
    # a new host never inherits the old host's token
    client.post("/label-studio/setup", json={"hostname": "http://elsewhere:8080"})
    assert client.app.state.label_studio["access_token"] is None


@pytest.mark.parametrize("kind", ["keypointlabels", "rectanglelabels"])
def test_predict_answers_the_interactive_context_with_a_brush_mask(client, tiny_model, kind):
    if kind == "keypointlabels":
        value = {"x": 15 / 96 * 100, "y": 30 / 72 * 100, "width": 0.5, "keypointlabels": ["Car"]}
        expected = dict(point_coords=[[15, 30]], point_labels=[1])
    else:
        value = {
            "x": 60 / 96 * 100,
            "y": 30 / 72 * 100,
            "width": 30 / 96 * 100,
            "height": 30 / 72 * 100,
            "rectanglelabels": ["Car"],
        }
        expected = dict(box=[60, 30, 90, 60])
    context = {
        "result": [
            {
                "type": kind,
                "value": value,
                "original_width": 96,
                "original_height": 72,
                "is_positive": True,
                "from_name": "kp",
                "to_name": "img",
            }
        ]
    }
    body = {
        "tasks": [{"id": 7, "data": {"image": data_uri(FRAME)}}],
        "label_config": CONFIG,
        "project": "1.17",
        "params": {"context": context},
    }
    r = client.post("/label-studio/predict", json=body)
    assert r.status_code == 200, r.text
    (prediction,) = r.json()["results"]
    (result,) = prediction["result"]
    assert (result["from_name"], result["to_name"], result["type"]) == ("brush", "img", "brushlabels")
    assert result["value"]["brushlabels"] == ["Car"] and result["value"]["format"] == "rle"
    got = brush_rle_decode(result["value"]["rle"], result["original_height"], result["original_width"])
    pred = samkit.ImagePredictor(tiny_model)
    pred.set_image(decode_image(base64.b64decode(data_uri(FRAME).split(",")[1])))
    masks, scores, _ = pred.predict(**expected, multimask_output="point_coords" in expected)
    np.testing.assert_array_equal(got, masks[np.argmax(scores)] > 0)
    assert prediction["score"] == pytest.approx(float(scores.max()))
    # batch pre-annotation (no context): no result, no error
    r = client.post("/label-studio/predict", json={"tasks": [{"id": 8, "data": {"image": data_uri(FRAME)}}]})
    assert r.json()["results"] == [{"result": [], "model_version": "samkit"}]


def test_bad_requests(client):
    kp = {"type": "keypointlabels", "value": {"x": 10, "y": 10}, "original_width": 96, "original_height": 72}
    for body, status, fragment in [
        (
            {"tasks": [{"id": 1, "data": {"image": "/data/upload/1/a.jpg"}}], "context": {"result": [kp]}},
            422,
            "no hostname",
        ),
        ({"tasks": [{"id": 1, "data": {}}], "context": {"result": [kp]}}, 422, "no image URL"),
        (
            {
                "tasks": [{"id": 1, "data": {"image": data_uri(FRAME)}}],
                "context": {"result": [{**kp, "original_width": None}]},
            },
            422,
            "original_width",
        ),
        (
            {
                "tasks": [{"id": 1, "data": {"image": "data:image/png;base64,@@"}}],
                "context": {"result": [kp]},
            },
            400,
            "base64",
        ),
        (
            {"tasks": [{"id": 1, "data": {"image": "ftp://x/a.jpg"}}], "context": {"result": [kp]}},
            422,
            "cannot read the image",
        ),
        # the server's own network is not reachable through a task URL
        (
            {
                "tasks": [{"id": 1, "data": {"image": "http://127.0.0.1:9/a.jpg"}}],
                "context": {"result": [kp]},
            },
            403,
            "not a public address",
        ),
        (
            {
                "tasks": [{"id": 1, "data": {"image": "http://169.254.169.254/x"}}],
                "context": {"result": [kp]},
            },
            403,
            "not a public address",
        ),
    ]:
        r = client.post("/label-studio/predict", json=body)
        assert r.status_code == status and fragment in r.text, r.text
    assert client.get("/label-studio/health", headers={"Authorization": ""}).status_code == 401
