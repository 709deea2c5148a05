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
