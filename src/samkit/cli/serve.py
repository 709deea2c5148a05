"""``samkit serve``: the HTTP API server and annotation page."""

from __future__ import annotations

import argparse

from ._common import CLIError, add_model_args, precision_of


def add_parser(sub) -> argparse.ArgumentParser:
    sv = sub.add_parser(
        "serve",
        help="run the HTTP API server",
        description="Serve the JSON API (OpenAPI docs at /docs). Binds 127.0.0.1 unless --host says otherwise. "
        "With --fast the server also compiles the clicks' mask upsampling (torch.compile) at start-up: "
        "a few seconds once, then a few ms saved on every large click. Every setting can also come from an "
        "environment variable SAMKIT_<SETTING> (SAMKIT_MODEL, SAMKIT_PRECISION, SAMKIT_API_KEY, "
        "SAMKIT_MAX_BATCH...); a flag given wins.",
        epilog="example: samkit serve --model sam2.1-hiera-tiny --port 8000",
    )
    sv.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    sv.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
    sv.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set SAMKIT_API_KEY)"
    )
    sv.add_argument("--cache-dir", default=None, help="also keep image embeddings on disk here")
    # defaults None: a flag left out leaves the setting to SAMKIT_<SETTING> or samkit.server.Settings
    sv.add_argument("--max-batch", type=int, default=None, help="images encoded together (default 4)")
    sv.add_argument(
        "--max-wait-ms", type=float, default=None, help="wait this long to fill a batch (default 10)"
    )
    sv.add_argument(
        "--max-queue", type=int, default=None, help="queued uploads before answering 503 (default 16)"
    )
    sv.add_argument("--max-upload-mb", type=float, default=None, help="largest upload (default 32 MB)")
    sv.add_argument("--cors-origin", action="append", default=[], help="allow this web origin (repeatable)")
    sv.add_argument(
        "--stream-sessions", type=int, default=None, help="live sessions (/v1/stream) at once (default 4)"
    )
    sv.add_argument(
        "--head", default=None, help="a prompt-free head (samkit train-head): the page gets an 'Auto' button"
    )
    sv.add_argument(
        "--integrations",
        default=None,
        help="answer these annotation tools' requests, comma-separated: cvat (/cvat/...), label-studio "
        "(/label-studio, an ML backend), x-anylabeling (/v1/models, /v1/predict, /v1/video/...)",
    )
    sv.add_argument(
        "--client-decoding",
        action="store_true",
        help="let the page decode clicks itself (onnxruntime-web on the server's embeddings): no request "
        "per click; the server still answers /v1/segment",
    )
    add_model_args(sv)
    sv.set_defaults(model=None)
    return sv


def settings_from_args(args: argparse.Namespace):
    """The server's :class:`~samkit.server.Settings` from ``samkit serve``'s flags: a flag given wins,
    the others come from the ``SAMKIT_*`` environment variables or the defaults."""
    from pydantic import ValidationError

    from ..server import Settings
    from ..server.config import describe_error

    flags = {
        "model": args.model,
        "checkpoint": args.checkpoint,
        "device": args.device,
        "api_key": args.api_key,
        "cache_dir": args.cache_dir,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "max_queue": args.max_queue,
        "max_upload_bytes": None if args.max_upload_mb is None else int(args.max_upload_mb * 2**20),
        "cors_origins": tuple(args.cors_origin) or None,
        "head": args.head,
        "stream_sessions": args.stream_sessions,
        "client_decoding": args.client_decoding or None,
        "integrations": args.integrations,
    }
    if args.fast:
        # the fast path; a server's clicks pay for compiling the mask upsampling once (at start-up)
        flags.update(precision=precision_of(args), compile=True)
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:
        raise CLIError(describe_error(e)) from None


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from ..server import create_app

    if not 0 < args.port < 65536:
        raise CLIError(f"--port must be 1-65535, got {args.port}")
    settings = settings_from_args(args)
    if settings.client_decoding:
        # before the model loads: what client-side decoding needs
        from ..export import ExportError
        from ..export.onnx import require_onnx
        from ..server.vendor import VendorError, require_ort_web

        if settings.precision != "fp32":
            raise CLIError("--client-decoding exports the float32 decoder: leave out --fast")
        try:
            require_onnx()  # the decoder is exported at start-up
            require_ort_web()
        except (VendorError, ExportError) as e:
            raise CLIError(str(e)) from None
    # load the model before binding, so a bad --model/--checkpoint fails with one line
    if settings.head and args.model is None:
        from ..heads import HeadError, PromptFreeHead

        try:
            settings = settings.model_copy(
                update={"model": PromptFreeHead.read_info(settings.head)["variant"]}
            )
        except HeadError as e:
            raise CLIError(str(e)) from None
    model = settings.load_model()
    try:
        head = settings.load_head(model)
    except ValueError as e:
        raise CLIError(str(e)) from None
    uvicorn.run(
        create_app(settings, model=model, head=head), host=args.host, port=args.port, log_level="info"
    )
    return 0
