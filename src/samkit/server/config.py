"""Server settings: one frozen, validated :class:`Settings` (pydantic-settings).

Every field can come from an environment variable ``SAMKIT_<FIELD>`` (``SAMKIT_MODEL``,
``SAMKIT_API_KEY``, ``SAMKIT_PRECISION``, ``SAMKIT_MAX_BATCH``...); keyword arguments win over the
environment, and ``samkit serve``'s flags are keyword arguments (a flag left out leaves the
environment's value, else the default). ``ServerConfig`` is the same class under its former name.
"""

from __future__ import annotations

import hmac
import os
from typing import Annotated

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ..configs import resolve_name
from ..policy import PRECISIONS

__all__ = ["ServerConfig", "Settings", "bearer_token", "describe_error", "key_ok"]


INTEGRATIONS = ("cvat", "label-studio", "x-anylabeling")


class Settings(BaseSettings):
    """What the server runs and its limits. Invalid values raise ``pydantic.ValidationError`` (a
    ``ValueError``) naming the field."""

    model_config = SettingsConfigDict(env_prefix="SAMKIT_", frozen=True, extra="forbid")

    # the model, loaded once in the app's lifespan (samkit.load_model)
    model: str = "sam2.1-hiera-tiny"
    checkpoint: str | None = None
    device: str | None = None
    precision: str = "fp32"  # "fp32" (exact) or "bf16" (the fast path; `samkit serve --fast`)
    compile: bool = False  # torch.compile the clicks' mask upsampling (compiled at start-up)
    # embedding cache: entries and bytes, in memory; optional on-disk copy keyed by image hash + model
    cache_entries: int = Field(32, ge=1)
    cache_bytes: int = Field(2 * 2**30, ge=1)
    cache_on_cpu: bool = True
    cache_dir: str | None = None
    mask_cache_entries: int = Field(256, ge=1)
    # encoder micro-batching and back-pressure
    max_batch: int = Field(4, ge=1)  # requests gathered per encoder call (the encoder itself chunks)
    max_wait_ms: float = Field(10.0, ge=0)
    max_queue: int = Field(16, ge=1)
    # safety (SAMKIT_API_KEY sets the key; an empty value means none)
    api_key: str | None = Field(None, repr=False)
    max_upload_bytes: int = Field(32 * 2**20, ge=1)
    max_pixels: int = Field(50_000_000, ge=1)
    cors_origins: tuple[str, ...] = ()
    # video sessions close after this long without a request
    video_idle_seconds: float = Field(600.0, gt=0)
    # live tracking over the WebSocket /v1/stream: sessions at once, and how long one may stay silent
    stream_sessions: int = Field(4, ge=1)
    stream_idle_seconds: float = Field(60.0, gt=0)
    # a prompt-free head (samkit train-head) for POST /v1/segment {"head": true} and the page's button
    head: str | None = None
    # the page decodes clicks itself (onnxruntime-web) on embeddings the server hands out
    client_decoding: bool = False
    # annotation tools whose request shapes the server answers: cvat, label-studio, x-anylabeling
    # (each off unless named: Label Studio's backend fetches image URLs it is given)
    integrations: Annotated[tuple[str, ...], NoDecode] = ()  # (a comma list in SAMKIT_INTEGRATIONS)
    # the detector of text prompts (Hugging Face id or local folder), loaded at the first text request
    detector: str | None = None

    @field_validator("model")
    @classmethod
    def _known_model(cls, v: str) -> str:
        resolve_name(v)  # raises ValueError listing the valid names
        return v

    @field_validator("precision")
    @classmethod
    def _precision(cls, v: str) -> str:
        if v not in PRECISIONS:
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {v!r}")
        return v

    @field_validator("integrations", mode="before")
    @classmethod
    def _integrations(cls, v):
        if isinstance(v, str):  # "cvat,label-studio" (the flag, SAMKIT_INTEGRATIONS)
            v = [x.strip() for x in v.split(",") if x.strip()]
        unknown = [x for x in v or () if x not in INTEGRATIONS]
        if unknown:
            raise ValueError(
                f"unknown integration {', '.join(map(str, unknown))}: use {', '.join(INTEGRATIONS)}"
            )
        return tuple(dict.fromkeys(v or ()))

    @field_validator("api_key", "checkpoint", "device", "cache_dir", "head", "detector", mode="before")
    @classmethod
    def _empty_is_none(cls, v):
        if isinstance(v, os.PathLike):
            return os.fspath(v)  # checkpoint=Path(...), cache_dir=Path(...)
        return v or None

    def load_model(self):
        """The model these settings describe (:func:`samkit.load_model` with model, checkpoint,
        device, precision and compile)."""
        from ..checkpoints import load_model

        return load_model(
            self.model,
            checkpoint=self.checkpoint,
            device=self.device,
            precision=self.precision,
            compile=self.compile,
        )

    def load_head(self, model=None):
        """The prompt-free head of ``head`` (None without one), checked against ``model``."""
        if self.head is None:
            return None
        from ..heads import PromptFreeHead

        head = PromptFreeHead.load(self.head)
        if model is not None:
            head.check_model(model)
            head = head.to(model.device)
        return head


def bearer_token(header: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header, or the password of a ``Basic`` one
    (tools such as Label Studio can only send basic auth: any user name, the key as password); ''
    for none or another scheme."""
    header = header or ""
    if header.lower().startswith("bearer "):
        return header[7:]
    if header.lower().startswith("basic "):
        import base64
        import binascii

        try:
            return base64.b64decode(header[6:], validate=True).decode().partition(":")[2]
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return ""
    return ""


def key_ok(config: Settings, token: str | None) -> bool:
    """Whether ``token`` is the server's API key (always true when the server has none). The one
    comparison of keys (constant time), for HTTP routes and the WebSocket alike."""
    if not config.api_key:
        return True
    return hmac.compare_digest((token or "").encode(), config.api_key.encode())


# the former name (a frozen dataclass until the settings moved to pydantic-settings)
ServerConfig = Settings


def describe_error(error: ValidationError) -> str:
    """One line per invalid setting: ``max_batch (SAMKIT_MAX_BATCH): Input should be ... (got 0)``."""
    lines = []
    for e in error.errors():
        name = ".".join(str(p) for p in e["loc"]) or "settings"
        env = f" (SAMKIT_{name.upper()})" if name in Settings.model_fields else ""
        msg = e["msg"].removeprefix("Value error, ")
        got = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) else ""
        if name == "api_key" or got[6:-1] in msg:
            got = ""  # never echo a secret; nor a value the message already quotes
        lines.append(f"{name}{env}: {msg}{got}")
    return "; ".join(lines)
