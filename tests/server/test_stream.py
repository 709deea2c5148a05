"""Live tracking over the WebSocket /v1/stream: round trips equal to a StreamTracker fed the same
frames, objects added and removed, the API key, the session bound, the idle timeout, recoverable
errors (the socket stays usable) and broken protocol (closed with a code; the server goes on)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.websockets import WebSocketDisconnect

from samkit import StreamTracker, rle
from samkit import transforms as T
from samkit.server import ServerConfig, create_app
from samkit.server.routes import stream as stream_route
from videogen import synthetic_frames

FRAMES = synthetic_frames(6)  # 96x72


def jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


JPEGS = [jpeg(f) for f in FRAMES]


@pytest.fixture()
def make_client(tiny_model):
    """A TestClient (lifespan run) of an app on the tiny model with these settings."""
    clients = []

    def make(**settings) -> TestClient:
        c = TestClient(create_app(ServerConfig(model="test-tiny", **settings), model=tiny_model))
        clients.append(c.__enter__())
        return c

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture()
def client(make_client):
    return make_client()


def closed_with(ws) -> WebSocketDisconnect:
    """The close the server sends next (receiving blocks until it comes)."""
    with pytest.raises(WebSocketDisconnect) as e:
        ws.receive_json()
    return e.value


def assert_answer(answer: dict, frame: int, expected: dict) -> None:
    """An answer to frame ``frame`` whose objects are exactly ``expected`` ({obj_id: mask})."""
    assert "error" not in answer, answer
    assert (answer["frame"], answer["width"], answer["height"]) == (frame, 96, 72)
    assert answer["ms"] > 0
    assert [o["obj_id"] for o in answer["objects"]] == list(expected)
    for o, want in zip(answer["objects"], expected.values()):
        got = rle.decode(o["rle"])
        assert got.shape == (72, 96) and o["rle"]["size"] == [72, 96]
        np.testing.assert_array_equal(got, want)
        assert o["area"] == int(got.sum())


def round_trip(ws, frame: int = 0) -> dict:
    ws.send_bytes(JPEGS[frame])
    return ws.receive_json()


def test_stream_equals_a_stream_tracker_fed_the_same_frames(client, tiny_model):
    local = StreamTracker(tiny_model)
    frames = [T.decode_image(b) for b in JPEGS]  # what the server tracks: the decoded JPEGs
    with client.websocket_connect("/v1/stream") as ws:
        # two prompts for object 1 before the first frame add up; they go with the next frame
        ws.send_json({"prompts": {"1": {"points": [[15, 30]], "labels": [1]}}})
        ws.send_json({"prompts": {"1": {"points": [[80, 10]], "labels": [0]}}})
        want = local.track(frames[0], {1: {"points": [[15, 30], [80, 10]], "labels": [1, 0]}})
        first = round_trip(ws, 0)
        assert_answer(first, 0, want)
        assert first["objects"][0]["area"] > 0
        assert_answer(round_trip(ws, 1), 1, local.track(frames[1]))
        # objects added later: an all-digit key is an int id, any other a string
        ws.send_json({"prompts": {"b": {"box": [60, 30, 90, 60]}, "2": {"points": [[40, 40]]}}})
        want = local.track(frames[2], {"b": {"box": [60, 30, 90, 60]}, 2: {"points": [[40, 40]]}})
        assert list(want) == [1, "b", 2]
        assert_answer(round_trip(ws, 2), 2, want)
        # removal, at once: the next frame has the others only
        ws.send_json({"remove": 1})
        ws.send_json({"remove": "2"})
        local.remove_object(1)
        local.remove_object(2)
        assert_answer(round_trip(ws, 3), 3, local.track(frames[3]))
        # a correction of a known object
        ws.send_json({"prompts": {"b": {"points": [[70, 40]], "labels": [1]}}})
        assert_answer(
            round_trip(ws, 4), 4, local.track(frames[4], {"b": {"points": [[70, 40]], "labels": [1]}})
        )
        # reset: a new session, from frame 0 with no object
        ws.send_json({"reset": True})
        assert_answer(round_trip(ws, 5), 0, {})


def test_api_key_as_header_or_query(make_client):
    c = make_client(api_key="s3cret")
    for url, headers in [
        ("/v1/stream", {}),
        ("/v1/stream?key=wrong", {}),
        ("/v1/stream", {"Authorization": "Bearer no"}),
    ]:
        with c.websocket_connect(url, headers=headers) as ws:
            e = closed_with(ws)
            assert e.code == 1008 and e.reason.startswith("unauthorized"), (url, headers, e.reason)
    for url, headers in [("/v1/stream?key=s3cret", {}), ("/v1/stream", {"Authorization": "Bearer s3cret"})]:
        with c.websocket_connect(url, headers=headers) as ws:
            assert round_trip(ws)["frame"] == 0
    # the HTTP routes keep their key too
    assert c.get("/v1/videos/x/frames/0").status_code == 401


def test_live_sessions_are_bounded(make_client):
    c = make_client(stream_sessions=1)
    assert c.get("/healthz").json()["stream_sessions"] == 0
    with c.websocket_connect("/v1/stream") as first:
        assert round_trip(first)["frame"] == 0
        assert c.get("/healthz").json()["stream_sessions"] == 1
        with c.websocket_connect("/v1/stream") as second:
            e = closed_with(second)
            assert e.code == 1013 and e.reason.startswith("too many live sessions")
        assert round_trip(first, 1)["frame"] == 1  # the first one goes on
    # closing the first frees its place
    assert c.get("/healthz").json()["stream_sessions"] == 0
    with c.websocket_connect("/v1/stream") as again:
        assert round_trip(again)["frame"] == 0


def test_idle_session_is_closed(make_client):
    c = make_client(stream_idle_seconds=0.2)
    with c.websocket_connect("/v1/stream") as ws:
        assert round_trip(ws)["frame"] == 0
        e = closed_with(ws)  # nothing sent since: the server closes it
        assert e.code == 1001 and e.reason.startswith("idle")
    assert c.get("/healthz").json()["stream_sessions"] == 0


def test_recoverable_errors_keep_the_socket_open(make_client):
    c = make_client(max_pixels=96 * 72)
    with c.websocket_connect("/v1/stream") as ws:
        # a frame that cannot be decoded: its prompt waits for the next frame
        ws.send_json({"prompts": {"1": {"points": [[15, 30]]}}})
        for data, code in [
            (b"not a jpeg", "bad_frame"),
            (JPEGS[0][:200], "bad_frame"),  # a truncated JPEG
            (jpeg(np.zeros((100, 100, 3), np.uint8)), "frame_too_large"),
        ]:
            ws.send_bytes(data)
            answer = ws.receive_json()
            assert answer["frame"] is None and answer["error"]["code"] == code, answer
        answer = round_trip(ws, 0)
        assert answer["frame"] == 0 and [o["obj_id"] for o in answer["objects"]] == [1]
        ws.send_json({"reset": True})
        # a prompt the frame cannot take: the frame is not tracked and the prompt is dropped
        ws.send_json({"prompts": {"1": {"points": [[500, 10]], "labels": [1]}}})
        answer = round_trip(ws, 0)
        assert answer["frame"] is None and answer["error"]["code"] == "bad_prompt"
        assert "500" in answer["error"]["message"]
        ws.send_json(
            {"prompts": {"1": {"points": [[10, 10]], "labels": [0]}}}
        )  # a new object needs a positive click
        answer = round_trip(ws, 0)
        assert answer["frame"] is None and answer["error"]["code"] == "bad_prompt"
        # commands that cannot be done are answered, and named
        for command, code in [
            ({"remove": 9}, "unknown_object"),
            ({"remove": [1]}, "bad_command"),
            ({"reset": False}, "bad_command"),
            ({"prompts": {"1": {"pts": [[1, 1]]}}}, "bad_prompt"),
            ({"prompts": {"1": {"points": [[1, 1]], "labels": [1, 1]}}}, "bad_prompt"),
            ({"prompts": [1]}, "bad_prompt"),
        ]:
            ws.send_json(command)
            answer = ws.receive_json()
            assert answer["command"] == next(iter(command)) and answer["error"]["code"] == code, answer
        # a session's bounds: clicks waiting for one frame, objects
        many = {"prompts": {"1": {"points": [[1, 1]] * (stream_route.MAX_POINTS + 1)}}}
        ws.send_json(many)
        assert "clicks before one frame" in ws.receive_json()["error"]["message"]
        crowd = {str(i): {"box": [0, 0, 5, 5]} for i in range(stream_route.MAX_OBJECTS + 1)}
        ws.send_json({"prompts": crowd})
        assert f"at most {stream_route.MAX_OBJECTS} objects" in ws.receive_json()["error"]["message"]
        # the session is as it was: the next good frame is frame 0, with no object, then an object
        assert_answer(round_trip(ws, 0), 0, {})
        ws.send_json({"prompts": {"1": {"points": [[15, 30]]}}})
        answer = round_trip(ws, 1)
        assert answer["frame"] == 1 and [o["obj_id"] for o in answer["objects"]] == [1]


@pytest.mark.parametrize(
    "message, code, reason",
    [
        ("not json {", 1007, "invalid JSON"),
        ("data:image/jpeg;base64,/9j/", 1007, "invalid JSON"),  # a frame sent as text
        ("[1, 2]", 1003, "unsupported command"),
        ('{"dance": 1}', 1003, "unsupported command (dance)"),
        ('{"prompts": {}, "remove": 1}', 1003, "unsupported command"),
        ("{}", 1003, "unsupported command"),
        (b"x" * 1501, 1009, "message too big"),
        ('{"remove": "' + "x" * 70000 + '"}', 1009, "message too big"),
    ],
    ids=[
        "not-json",
        "frame-as-text",
        "not-an-object",
        "unknown",
        "two-commands",
        "empty",
        "big-frame",
        "big-command",
    ],
)
def test_broken_protocol_closes_the_socket_not_the_server(make_client, message, code, reason):
    c = make_client(max_upload_bytes=1500)
    with c.websocket_connect("/v1/stream") as ws:
        if isinstance(message, bytes):
            ws.send_bytes(message)
        else:
            ws.send_text(message)
        e = closed_with(ws)
        assert e.code == code and e.reason.startswith(reason), e.reason
        assert len(e.reason.encode()) <= 123
    assert c.get("/healthz").json()["stream_sessions"] == 0
    with c.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(jpeg(FRAMES[0][:20, :20]))  # under the 1500-byte limit
        assert ws.receive_json()["frame"] == 0


def test_an_unexpected_error_closes_with_1011(client, monkeypatch):
    def broken(self, frame, prompts=None):
        raise RuntimeError("device on fire")

    with client.websocket_connect("/v1/stream") as ws:
        monkeypatch.setattr(stream_route.StreamTracker, "track", broken)
        ws.send_bytes(JPEGS[0])
        e = closed_with(ws)
        assert e.code == 1011 and "device on fire" not in e.reason
    monkeypatch.undo()
    assert client.get("/healthz").json()["stream_sessions"] == 0
    with client.websocket_connect("/v1/stream") as ws:
        assert round_trip(ws)["frame"] == 0
