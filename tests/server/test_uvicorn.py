"""`samkit serve` as a real process on loopback: health, upload, segment, bad input, shutdown."""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import time

import httpx
import numpy as np
import pytest
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture()
def server(tiny_checkpoint):
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "samkit",
            "serve",
            "--model",
            "test-tiny",
            "--checkpoint",
            str(tiny_checkpoint),
            "--port",
            str(port),
            "--api-key",
            "k",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        proc.kill()
        raise RuntimeError(proc.stdout.read().decode())
    yield url
    proc.terminate()
    proc.wait(timeout=20)


def test_real_server_round_trip(server):
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(buf, format="PNG")
    auth = {"Authorization": "Bearer k"}
    with httpx.Client(base_url=server, timeout=30) as c:
        assert c.post("/v1/images", files={"file": ("a.png", buf.getvalue())}).status_code == 401
        info = c.post("/v1/images", files={"file": ("a.png", buf.getvalue())}, headers=auth).json()
        r = c.post(
            "/v1/segment",
            json={"image_id": info["image_id"], "points": [[10, 10]], "labels": [1]},
            headers=auth,
        )
        assert r.status_code == 200 and len(r.json()["masks"]) == 3
        bad = c.post("/v1/images", files={"file": ("a.png", b"junk")}, headers=auth)
        assert bad.status_code == 415 and bad.json()["error"]["code"] == "unsupported_image"
        assert c.get("/healthz").json()["embeddings_cached"] == 1


def test_serve_bad_checkpoint_is_one_line(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"junk")
    r = subprocess.run(
        [sys.executable, "-m", "samkit", "serve", "--model", "test-tiny", "--checkpoint", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "corrupt" in r.stderr


def test_load_and_faults_on_loopback(live_server):
    """50 concurrent segment requests answer 200 with identical masks; each bad input gets its 4xx;
    /healthz still answers afterwards. Bounded: ~60 requests, loopback only."""
    from concurrent.futures import ThreadPoolExecutor

    from server.test_api import png_header_only

    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(buf, format="JPEG")
    jpeg = buf.getvalue()
    with httpx.Client(base_url=live_server, timeout=60) as c:
        image_id = c.post("/v1/images", files={"file": ("a.jpg", jpeg)}).json()["image_id"]
        body = {"image_id": image_id, "points": [[30, 20]], "labels": [1]}
        with ThreadPoolExecutor(10) as ex:
            results = list(ex.map(lambda _: c.post("/v1/segment", json=body), range(50)))
        assert all(r.status_code == 200 for r in results)
        first = results[0].json()["masks"]
        assert all(r.json()["masks"][i]["rle"] == m["rle"] for r in results for i, m in enumerate(first))
        faults = [
            (b"garbage" * 10, 415),
            (jpeg[:200], 400),
            (png_header_only(20000, 20000), 413),
            (b"\0" * (50 * 2**20), 413),
        ]
        for payload, status in faults:
            r = c.post("/v1/images", files={"file": ("x", payload)})
            assert r.status_code == status and "error" in r.json(), (status, r.text[:200])
        nan = c.post(
            "/v1/segment",
            content=b'{"image_id": "%s", "points": [[NaN, 1]], "labels": [1]}' % image_id.encode(),
            headers={"content-type": "application/json"},
        )
        assert nan.status_code == 422
        assert (
            c.post("/v1/segment", json={"image_id": "unknown", "points": [[1, 1]], "labels": [1]}).status_code
            == 404
        )
        assert c.get("/healthz").status_code == 200
