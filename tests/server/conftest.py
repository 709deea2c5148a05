"""A live uvicorn server on loopback, in a thread, for tests that need real HTTP (browser, disconnects)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest
import uvicorn

from samkit.server import ServerConfig, create_app


@pytest.fixture()
def live_server(tiny_model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(ServerConfig(model="test-tiny"), model=tiny_model),
            host="127.0.0.1",
            port=port,
            log_level="warning",
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield url
    server.should_exit = True
    thread.join(timeout=10)
