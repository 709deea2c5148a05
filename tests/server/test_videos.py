"""Video sessions over the API: upload, prompts, NDJSON propagation, disconnects, expiry, errors."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

import samkit
from samkit import rle
from samkit.server import ServerConfig, create_app
from videogen import synthetic_frames, write_mp4


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("v") / "c.mp4", synthetic_frames(10))


@pytest.fixture()
def client(tiny_model):
    with TestClient(
        create_app(ServerConfig(model="test-tiny", video_idle_seconds=600), model=tiny_model)
    ) as c:
        yield c


def upload(client, clip):
    return client.post("/v1/videos", files={"file": ("c.mp4", clip.read_bytes(), "video/mp4")})


def test_video_session_matches_video_predictor(client, clip, tiny_model):
    info = upload(client, clip).json()
    assert (info["num_frames"], info["width"], info["height"]) == (10, 96, 72)
    vid = info["video_id"]
    r = client.post(
        f"/v1/videos/{vid}/prompts", json={"frame_idx": 0, "obj_id": 1, "points": [[15, 30]], "labels": [1]}
    )
    assert r.status_code == 200 and r.json()["objects"][0]["obj_id"] == 1
    r = client.post(
        f"/v1/videos/{vid}/prompts", json={"frame_idx": 2, "obj_id": "b", "box": [60, 30, 90, 60]}
    )
    assert [o["obj_id"] for o in r.json()["objects"]] == [1, "b"]
    lines = client.post(f"/v1/videos/{vid}/propagate", json={}).text.strip().splitlines()
    frames = [json.loads(line) for line in lines]
    assert [f["frame_idx"] for f in frames] == list(range(10))
    # the same session through the Python API
    vp = samkit.VideoPredictor(tiny_model, progress=False)
    st = vp.init_state(str(clip))
    vp.add_new_points_or_box(st, 0, 1, points=[[15, 30]], labels=[1])
    vp.add_new_points_or_box(st, 2, "b", box=[60, 30, 90, 60])
    for (f, ids, logits), line in zip(vp.propagate_in_video(st), frames):
        assert line["frame_idx"] == f and [o["obj_id"] for o in line["objects"]] == ids
        for o, m in zip(line["objects"], (logits[:, 0] > 0).numpy()):
            np.testing.assert_array_equal(rle.decode(o["rle"]), m)
    frame = client.get(f"/v1/videos/{vid}/frames/3")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    assert client.delete(f"/v1/videos/{vid}").status_code == 200
    assert client.post(f"/v1/videos/{vid}/propagate", json={}).status_code == 404


def test_disconnect_mid_stream_does_not_leak(live_server, clip):
    """A real client (over loopback) that hangs up after the first frame leaves the session usable."""
    import httpx

    with httpx.Client(base_url=live_server, timeout=60) as c:
        vid = c.post("/v1/videos", files={"file": ("c.mp4", clip.read_bytes(), "video/mp4")}).json()[
            "video_id"
        ]
        c.post(
            f"/v1/videos/{vid}/prompts",
            json={"frame_idx": 0, "obj_id": 1, "points": [[15, 30]], "labels": [1]},
        )
        with c.stream("POST", f"/v1/videos/{vid}/propagate", json={}) as r:
            first = next(r.iter_lines())
            assert json.loads(first)["frame_idx"] == 0
        again = c.post(f"/v1/videos/{vid}/propagate", json={"max_frame_num_to_track": 2})
        assert again.status_code == 200 and len(again.text.strip().splitlines()) == 3
        assert c.delete(f"/v1/videos/{vid}").status_code == 200
        assert c.get("/healthz").json()["video_sessions"] == 0


def test_sessions_expire(tiny_model, clip):
    with TestClient(
        create_app(ServerConfig(model="test-tiny", video_idle_seconds=0.2), model=tiny_model)
    ) as c:
        vid = upload(c, clip).json()["video_id"]
        time.sleep(0.5)
        r = c.post(
            f"/v1/videos/{vid}/prompts", json={"frame_idx": 0, "obj_id": 1, "points": [[1, 1]], "labels": [1]}
        )
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_video"


def test_video_errors(client, clip, tmp_path):
    bad = client.post("/v1/videos", files={"file": ("x.mp4", b"not a video" * 10, "video/mp4")})
    assert bad.status_code == 415 and bad.json()["error"]["code"] == "unsupported_video"
    vid = upload(client, clip).json()["video_id"]
    for body in (
        {"frame_idx": 99, "obj_id": 1, "points": [[1, 1]], "labels": [1]},
        {"frame_idx": 0, "obj_id": 1, "points": [[1, 1]], "labels": [2]},
        {"frame_idx": 0, "obj_id": 1},
    ):
        r = client.post(f"/v1/videos/{vid}/prompts", json=body)
        assert r.status_code == 422 and "error" in r.json()
    assert client.post(f"/v1/videos/{vid}/propagate", json={}).status_code == 422
    assert client.get(f"/v1/videos/{vid}/frames/99").status_code == 404
    assert client.delete("/v1/videos/nope").status_code == 404
    assert client.get("/healthz").status_code == 200
