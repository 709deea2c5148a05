"""The server's Settings: SAMKIT_* environment variables, validation, and what the app loads."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from samkit.cli import build_parser, main
from samkit.server import ServerConfig, Settings, create_app
from samkit.server.config import describe_error


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    """No SAMKIT_* setting from the machine running the tests leaks in."""
    for name in Settings.model_fields:
        monkeypatch.delenv(f"SAMKIT_{name.upper()}", raising=False)


def test_server_config_is_settings():
    assert ServerConfig is Settings
    s = ServerConfig(model="test-tiny", max_batch=2)
    assert (s.model, s.max_batch, s.precision, s.compile, s.api_key) == ("test-tiny", 2, "fp32", False, None)


def test_environment_variables_are_read(monkeypatch):
    monkeypatch.setenv("SAMKIT_MODEL", "test-tiny")
    monkeypatch.setenv("SAMKIT_PRECISION", "bf16")
    monkeypatch.setenv("SAMKIT_COMPILE", "true")
    monkeypatch.setenv("SAMKIT_MAX_BATCH", "8")
    monkeypatch.setenv("SAMKIT_API_KEY", "s3cret")
    monkeypatch.setenv("SAMKIT_CORS_ORIGINS", '["https://a.example"]')
    s = Settings()
    assert (s.model, s.precision, s.compile, s.max_batch) == ("test-tiny", "bf16", True, 8)
    assert s.api_key == "s3cret" and s.cors_origins == ("https://a.example",)
    assert "s3cret" not in repr(s)
    # keyword arguments win over the environment
    assert Settings(max_batch=3, api_key=None).max_batch == 3
    assert Settings(api_key=None).api_key is None


def test_empty_api_key_means_none(monkeypatch):
    monkeypatch.setenv("SAMKIT_API_KEY", "")
    assert Settings().api_key is None


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"max_batch": 0}, "max_batch"),
        ({"cache_bytes": -1}, "cache_bytes"),
        ({"max_queue": 0}, "max_queue"),
        ({"max_upload_bytes": 0}, "max_upload_bytes"),
        ({"video_idle_seconds": 0}, "video_idle_seconds"),
        ({"max_wait_ms": -1}, "max_wait_ms"),
        ({"precision": "fp16"}, "precision"),
        ({"model": "sam3-hiera-huge"}, "model"),
        ({"max_btach": 4}, "max_btach"),
    ],
)
def test_bad_values_name_the_field(kwargs, field):
    with pytest.raises(ValueError) as e:  # pydantic.ValidationError is a ValueError
        Settings(**kwargs)
    assert field in str(e.value)
    assert describe_error(e.value).startswith(field)


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("SAMKIT_PRECISION", "fp16")
    with pytest.raises(ValueError) as e:
        Settings()
    assert (
        describe_error(e.value)
        == "precision (SAMKIT_PRECISION): precision must be 'fp32' or 'bf16', got 'fp16'"
    )


def test_settings_are_frozen():
    s = Settings()
    with pytest.raises(ValueError, match="frozen"):
        s.max_batch = 2


def test_api_key_from_the_environment_is_required(monkeypatch, tiny_model):
    monkeypatch.setenv("SAMKIT_API_KEY", "k3y")
    with TestClient(create_app(Settings(model="test-tiny"), model=tiny_model)) as c:
        assert c.get("/healthz").status_code == 200
        files = {"file": ("x.png", _png(np.zeros((8, 8, 3), np.uint8)), "image/png")}
        assert c.post("/v1/images", files=files).status_code == 401


def test_create_app_loads_a_bf16_model(tiny_checkpoint):
    """create_app alone (no model passed) serves the fast path: precision and compile reach load_model."""
    settings = Settings(model="test-tiny", checkpoint=tiny_checkpoint, device="cpu", precision="bf16")
    photo = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    with TestClient(create_app(settings)) as c:
        assert settings.checkpoint == str(tiny_checkpoint)  # a path is kept as its string
        model = c.app.state.engine.model
        assert model.precision == "bf16" and model.policy.precision == "bf16" and not model.policy.compile
        health = c.get("/healthz").json()
        assert health["policy"]["precision"] == "bf16" and health["model"] == "test-tiny"
        image_id = c.post("/v1/images", files={"file": ("x.png", _png(photo), "image/png")}).json()[
            "image_id"
        ]
        r = c.post("/v1/segment", json={"image_id": image_id, "points": [[40, 30]], "labels": [1]})
        assert r.status_code == 200 and r.json()["masks"]


def test_serve_flags_win_and_the_rest_comes_from_the_environment(monkeypatch):
    from samkit.cli.serve import settings_from_args

    monkeypatch.setenv("SAMKIT_MAX_BATCH", "8")
    monkeypatch.setenv("SAMKIT_MODEL", "test-tiny")
    parser = build_parser()
    s = settings_from_args(parser.parse_args(["serve"]))
    assert (s.model, s.max_batch, s.precision, s.compile, s.max_queue) == ("test-tiny", 8, "fp32", False, 16)
    s = settings_from_args(
        parser.parse_args(["serve", "--fast", "--max-batch", "2", "--model", "sam2-hiera-small"])
    )
    assert (s.model, s.max_batch, s.precision, s.compile) == ("sam2-hiera-small", 2, "bf16", True)
    s = settings_from_args(parser.parse_args(["serve", "--max-upload-mb", "1", "--cors-origin", "https://b"]))
    assert s.max_upload_bytes == 2**20 and s.cors_origins == ("https://b",)


def test_serve_bad_flag_is_one_line(capsys):
    assert main(["serve", "--max-batch", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "samkit serve: error: max_batch (SAMKIT_MAX_BATCH): Input should be greater than or equal to 1 (got 0)"
    )


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()
