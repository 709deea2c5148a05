"""X-AnyLabeling's remote-server API against samkit: requests shaped as X-AnyLabeling's RemoteServer model
sends them (a Token header, data URIs, marks, relative video points, server-sent events), answers
checked against samkit's own predictors."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import samkit
from samkit.polygons import mask_to_polygons
from samkit.server import ServerConfig, create_app
from videogen import synthetic_frames

from .payloads import data_uri

FRAMES = synthetic_frames(6)  # 96x72
HEADERS = {"Content-Type": "application/json", "Token": "k"}  # what X-AnyLabeling sends


@pytest.fixture()
def client(tiny_model):
    config = ServerConfig(model="test-tiny", api_key="k", integrations=("x-anylabeling",))
    with TestClient(create_app(config, model=tiny_model)) as c:
        yield c


def test_models_health_and_the_token_header(client):
    assert client.get("/health").json()["status"] == "healthy"  # no key, as X-AnyLabeling-Server
    r = client.get("/v1/models", headers=HEADERS).json()
    assert r["success"] is True
    assert {k: v["batch_processing_mode"] for k, v in r["data"].items()} == {
        "test-tiny": "default",
        "test-tiny-video": "video",
    }
    assert "button_add_point" in [w["name"] for w in r["data"]["test-tiny"]["widgets"]]
    assert (
        client.get("/v1/models/test-tiny-video/info", headers=HEADERS).json()["data"]["model_id"]
        == "test-tiny-video"
    )
    r = client.get("/v1/models/sam3/info", headers=HEADERS)
    assert r.status_code == 404 and r.json() == {
        "success": False,
        "error": {"code": "MODEL_NOT_FOUND", "message": "Model 'sam3' not loaded"},
    }
    r = client.get("/v1/models", headers={"Token": "wrong"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
    assert client.get("/v1/models", headers={"Authorization": "Bearer k"}).status_code == 200


def test_predict_answers_marks_with_polygons(client, tiny_model):
    frame = FRAMES[0]
    marks = [
        {"type": "point", "data": [15, 30], "label": 1},
        {"type": "point", "data": [80, 10], "label": 0},
    ]
    payload = {
        "model": "test-tiny",
        "image": data_uri(frame),
        "params": {"conf_threshold": 0.0, "iou_threshold": 0.0, "epsilon_factor": 0.001, "marks": marks},
    }
    r = client.post("/v1/predict", json=payload, headers=HEADERS)
    assert r.status_code == 200, r.text
    shapes = r.json()["data"]["shapes"]
    assert shapes and all(s["shape_type"] == "polygon" and s["label"] == "AUTOLABEL_OBJECT" for s in shapes)
    assert all(s["points"][0] == s["points"][-1] and 0 <= s["score"] <= 1 for s in shapes)
    pred = samkit.ImagePredictor(tiny_model)
    pred.set_image(frame)
    masks, scores, _ = pred.predict(
        point_coords=[[15, 30], [80, 10]], point_labels=[1, 0], multimask_output=False
    )
    want = masks[np.argmax(scores)] > 0
    # samkit's mask, as polygons (every vertex a pixel of the mask), closed as X-AnyLabeling-Server's are
    assert [s["points"] for s in shapes] == [p + p[:1] for p in mask_to_polygons(want, 0.001)]
    assert all(want[int(y), int(x)] for s in shapes for x, y in s["points"])

    # a rectangle mark is a box; show_boxes adds its rectangle; the embedding is reused
    payload["params"] = {
        "marks": [{"type": "rectangle", "data": [50, 10, 90, 60], "label": 1}],
        "show_boxes": True,
    }
    shapes = client.post("/v1/predict", json=payload, headers=HEADERS).json()["data"]["shapes"]
    assert "rectangle" in [s["shape_type"] for s in shapes]
    assert client.get("/healthz").json()["embeddings_cached"] == 1


def test_video_init_prompt_and_propagate_as_x_anylabeling_drives_them(client, tiny_model):
    frames = [data_uri(f) for f in FRAMES]
    r = client.post(
        "/v1/video/init",
        json={"model": "test-tiny-video", "frames": frames, "start_frame_index": 0},
        headers=HEADERS,
    )
    assert r.status_code == 200, r.text
    sid = r.json()["data"]["session_id"]
    assert r.json()["data"]["num_frames"] == 6
    # X-AnyLabeling sends points relative to the frame, and object 10000
    prompt = {
        "session_id": sid,
        "model": "test-tiny-video",
        "frame_index": 0,
        "points": [[15 / 96, 30 / 72]],
        "point_labels": [1],
        "obj_id": 10000,
        "params": {"conf_threshold": 0.0, "epsilon_factor": 0.001},
    }
    r = client.post("/v1/video/prompt", json=prompt, headers=HEADERS)
    assert r.status_code == 200, r.text
    data = r.json()["data"]
    assert data["frame_index"] == 0 and data["num_objects"] == 1
    assert all(s["group_id"] == 10000 for s in data["masks"])

    events = []
    with client.stream(
        "POST",
        "/v1/video/propagate/stream",
        json={"session_id": sid, "model": "test-tiny-video", "start_frame": 0},
        headers=HEADERS,
    ) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line[6:]))
    kinds = [e["type"] for e in events]
    assert kinds == ["started"] + ["progress"] * 6 + ["completed"], kinds
    results = events[-1]["results"]
    assert sorted(results, key=int) == [str(i) for i in range(6)]

    pred = samkit.VideoPredictor(tiny_model, progress=False)
    state = pred.init_state(FRAMES)
    pred.add_new_points_or_box(state, 0, 10000, points=np.array([[15.0, 30.0]]), labels=np.array([1]))
    for f, _, logits in pred.propagate_in_video(state):
        want = mask_to_polygons(logits[0, 0].numpy() > 0, 0.001)
        assert [s["points"] for s in results[str(f)]["masks"]] == [p + p[:1] for p in want], f

    # the answer at once is the same
    r = client.post(
        "/v1/video/propagate", json={"session_id": sid, "model": "test-tiny-video"}, headers=HEADERS
    )
    assert r.json()["data"]["results"] == results
    assert client.post(
        f"/v1/video/cleanup/{sid}", params={"model": "test-tiny-video"}, headers=HEADERS
    ).json()["success"]
    r = client.post(f"/v1/video/cleanup/{sid}", params={"model": "test-tiny-video"}, headers=HEADERS)
    assert r.status_code == 404 and r.json()["error"]["code"] == "SESSION_NOT_FOUND"


@pytest.mark.parametrize(
    "path, body, status, code",
    [
        (
            "/v1/predict",
            {"model": "test-tiny", "image": "data:image/png;base64,@@@", "params": {"marks": []}},
            422,
            "INVALID_IMAGE",
        ),
        ("/v1/predict", {"model": "nope", "image": "", "params": {}}, 404, "MODEL_NOT_FOUND"),
        (
            "/v1/predict",
            {"model": "test-tiny", "image": "QUJD", "params": {"marks": [{"type": "circle", "data": [1]}]}},
            422,
            "INVALID_MARKS",
        ),
        (
            "/v1/predict",
            {"model": "test-tiny", "image": "QUJD", "params": {"marks": [{"type": "point", "data": [1, 1]}]}},
            415,
            "UNSUPPORTED_IMAGE",
        ),
        ("/v1/video/init", {"model": "test-tiny-video", "frames": []}, 422, "MISSING_FRAMES"),
        (
            "/v1/video/prompt",
            {"model": "test-tiny-video", "session_id": "gone", "points": [[0.5, 0.5]], "point_labels": [1]},
            404,
            "UNKNOWN_VIDEO",
        ),
        ("/v1/video/propagate", {"model": "test-tiny-video"}, 422, "MISSING_SESSION"),
    ],
)
def test_bad_requests_get_the_tools_error_shape(client, path, body, status, code):
    r = client.post(path, json=body, headers=HEADERS)
    assert r.status_code == status, r.text
    assert r.json()["success"] is False and r.json()["error"]["code"] == code


def test_video_prompt_errors(client):
    small = data_uri(FRAMES[0][:40, :50])
    r = client.post(
        "/v1/video/init",
        json={"model": "test-tiny-video", "frames": [data_uri(FRAMES[0]), small]},
        headers=HEADERS,
    )
    assert r.status_code == 422 and "share one size" in r.json()["error"]["message"]
    sid = client.post(
        "/v1/video/init", json={"model": "test-tiny-video", "frames": [data_uri(FRAMES[0])]}, headers=HEADERS
    ).json()["data"]["session_id"]
    base = {"model": "test-tiny-video", "session_id": sid, "frame_index": 0, "point_labels": [1]}
    r = client.post("/v1/video/prompt", json={**base, "points": [[15, 30]]}, headers=HEADERS)
    assert r.status_code == 422 and "in [0, 1]" in r.json()["error"]["message"]
    r = client.post(
        "/v1/video/prompt", json={**base, "points": [[0.2, 0.3]], "frame_index": 5}, headers=HEADERS
    )
    assert r.status_code == 422 and "frame_index 5" in r.json()["error"]["message"]
    r = client.post(
        "/v1/video/propagate", json={"model": "test-tiny-video", "session_id": sid}, headers=HEADERS
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "NO_PROMPT"
    base = {"model": "test-tiny-video", "session_id": sid, "frame_index": 0, "point_labels": [1]}
    for bad in ([["a", "b"]], [[True, 0.5]], [[0.5]]):
        r = client.post("/v1/video/prompt", json={**base, "points": bad}, headers=HEADERS)
        assert r.status_code == 422 and r.json()["error"]["code"] == "INVALID_PROMPT", bad


def test_propagation_stops_at_end_frame(client):
    frames = [data_uri(f) for f in FRAMES]
    init = {"model": "test-tiny-video", "frames": frames, "start_frame_index": 10}
    sid = client.post("/v1/video/init", json=init, headers=HEADERS).json()["data"]["session_id"]
    # the frames wait on disk, not in memory
    assert len(list(client.app.state.sessions.get(sid).folder.glob("*.png"))) == 6  # as sent
    prompt = {
        "session_id": sid,
        "model": "test-tiny-video",
        "frame_index": 12,
        "points": [[0.2, 0.4]],
        "point_labels": [1],
    }
    assert client.post("/v1/video/prompt", json=prompt, headers=HEADERS).json()["success"]
    body = {"session_id": sid, "model": "test-tiny-video", "end_frame": 14}
    results = client.post("/v1/video/propagate", json=body, headers=HEADERS).json()["data"]["results"]
    assert sorted(results, key=int) == ["12", "13", "14"]  # from the prompted frame, numbered from 10


def test_bodies_over_the_limit_are_refused_before_they_are_read(tiny_model):
    config = ServerConfig(model="test-tiny", max_upload_bytes=1000, integrations=("x-anylabeling",))
    with TestClient(create_app(config, model=tiny_model)) as c:
        big = {"model": "test-tiny-video", "frames": ["A" * 3_000_000]}
        r = c.post("/v1/video/init", json=big)
        assert r.status_code == 413 and r.json()["error"]["code"] == "upload_too_large"

        def chunks():  # no Content-Length: counted as it arrives
            yield b'{"model": "test-tiny", "image": "'
            for _ in range(40):
                yield b"A" * 65536
            yield b'"}'

        r = c.post("/v1/segment", content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413, r.text
        assert c.get("/healthz").status_code == 200


def test_frames_are_kept_as_sent(client):
    buf = io.BytesIO()
    Image.fromarray(FRAMES[0]).save(buf, format="JPEG", quality=90)
    jpeg = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    init = {"model": "test-tiny-video", "frames": [jpeg, data_uri(FRAMES[1])]}
    sid = client.post("/v1/video/init", json=init, headers=HEADERS).json()["data"]["session_id"]
    folder = client.app.state.sessions.get(sid).folder
    assert sorted(p.name for p in folder.iterdir()) == ["000000.jpg", "000001.png"]
    assert (folder / "000000.jpg").read_bytes() == buf.getvalue()
