"""A live uvicorn server on loopback, in a thread, for tests that need real HTTP (browser, disconnects)."""

from __future__ import annotations

import pytest

from samkit.server import ServerConfig, create_app

from .live import serve


@pytest.fixture()
def live_server(tiny_model):
    with serve(create_app(ServerConfig(model="test-tiny"), model=tiny_model)) as url:
        yield url
