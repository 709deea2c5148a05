"""The ``samkit`` command line: one entry point, ``samkit <command>``.

Commands: ``segment`` (prompted masks for one image), ``auto`` (everything in an image), ``batch``
(many images, resumable, local or on Ray), ``track`` (objects through a video), ``serve`` (HTTP API),
``bench`` (speed, side by side with the reference), ``models`` (the variants and what is cached),
``download`` (fetch official weights). Every command takes ``--model``, ``--checkpoint`` and
``--device``. Errors print one line to stderr and exit with status 1 (2 for bad arguments).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

DEFAULT_MODEL = "sam2.1-hiera-tiny"


class CLIError(Exception):
    """An error to report as one line."""


# --- argument parsing helpers ----------------------------------------------------------------


def _parse_point(text: str) -> tuple[float, float, int]:
    """'x,y' (positive) or 'x,y:label' with label 1 (foreground) or 0 (background)."""
    coords, _, label = text.partition(":")
    parts = coords.split(",")
    try:
        if len(parts) != 2:
            raise ValueError
        x, y = (float(p) for p in parts)
        lab = int(label) if label else 1
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"point must look like X,Y or X,Y:LABEL (e.g. 500,375:1), got {text!r}"
        ) from None
    if lab not in (0, 1):
        raise argparse.ArgumentTypeError(f"point label must be 1 (foreground) or 0 (background), got {lab}")
    if not (abs(x) < float("inf") and abs(y) < float("inf")):
        raise argparse.ArgumentTypeError(f"point coordinates must be finite, got {text!r}")
    return x, y, lab


def _parse_box(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    try:
        if len(parts) != 4:
            raise ValueError
        box = tuple(float(p) for p in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"box must be 4 numbers X0,Y0,X1,Y1, got {text!r}") from None
    if not all(abs(v) < float("inf") for v in box):
        raise argparse.ArgumentTypeError(f"box coordinates must be finite, got {text!r}")
    if box[2] <= box[0] or box[3] <= box[1]:
        raise argparse.ArgumentTypeError(f"box must have X1 > X0 and Y1 > Y0, got {text!r}")
    return box  # type: ignore[return-value]


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"variant name or Hugging Face id, e.g. sam2.1-hiera-large (default: {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--checkpoint", default=None, help="official .pt checkpoint to load instead of downloading"
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda if available, else cpu)"
    )
    p.add_argument(
        "--fast",
        action="store_true",
        help="fast path: bfloat16 image encoder, and where bf16 is fast a bfloat16 mask decoder (clicks, auto) "
        "and memory attention (video); auto also scores its filters at low resolution. Masks differ slightly",
    )


def _add_generator_args(p: argparse.ArgumentParser, note: str = "") -> None:
    """The automatic mask generator's settings, shared by ``auto`` and ``batch --auto``."""
    p.add_argument("--points-per-side", type=int, default=32, help=f"{note}grid of N x N clicks (default 32)")
    p.add_argument(
        "--points-per-batch", type=int, default=64, help=f"{note}clicks decoded together (default 64)"
    )
    p.add_argument(
        "--pred-iou-thresh", type=float, default=0.8, help=f"{note}minimum predicted IoU (default 0.8)"
    )
    p.add_argument(
        "--stability-score-thresh", type=float, default=0.95, help=f"{note}minimum stability (default 0.95)"
    )
    p.add_argument(
        "--box-nms-thresh", type=float, default=0.7, help=f"{note}box NMS IoU threshold (default 0.7)"
    )
    p.add_argument(
        "--crop-n-layers", type=int, default=0, help=f"{note}extra layers of image crops (default 0)"
    )
    p.add_argument(
        "--min-mask-region-area", type=int, default=0, help=f"{note}fill holes/remove specks up to this area"
    )
    p.add_argument("--use-m2m", action="store_true", help=f"{note}refine each mask once with its own logits")


def _generator_kwargs(args: argparse.Namespace) -> dict:
    """AutomaticMaskGenerator arguments from the options of :func:`_add_generator_args`."""
    return {
        "points_per_side": args.points_per_side,
        "points_per_batch": args.points_per_batch,
        "pred_iou_thresh": args.pred_iou_thresh,
        "stability_score_thresh": args.stability_score_thresh,
        "box_nms_thresh": args.box_nms_thresh,
        "crop_n_layers": args.crop_n_layers,
        "min_mask_region_area": args.min_mask_region_area,
        "use_m2m": args.use_m2m,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="samkit",
        description="Segment anything in images and video, fast (SAM 2 / SAM 2.1 in pure PyTorch).",
    )
    parser.add_argument("--version", action="version", version=f"samkit {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="<command>")

    seg = sub.add_parser(
        "segment",
        help="segment one image from point/box prompts",
        description="Predict a mask for one image from point and box prompts and write it as PNG.",
        epilog="example: samkit segment photo.jpg --point 500,375 --point 300,200:0 --box 10,10,400,400 "
        "--out mask.png --overlay overlay.png",
    )
    seg.add_argument("image", help="image file (JPEG, PNG, ...)")
    seg.add_argument(
        "--point",
        action="append",
        type=_parse_point,
        default=[],
        metavar="X,Y[:LABEL]",
        help="a click in pixels; LABEL 1 = object (default), 0 = background. Repeatable",
    )
    seg.add_argument(
        "--box", type=_parse_box, default=None, metavar="X0,Y0,X1,Y1", help="a box around the object"
    )
    seg.add_argument(
        "--out", default=None, help="mask PNG to write (with --multimask: NAME_0.png, NAME_1.png, ...)"
    )
    seg.add_argument("--overlay", default=None, help="PNG of the image with the mask(s) and prompts drawn")
    seg.add_argument("--multimask", action="store_true", help="write all three candidate masks")
    seg.add_argument(
        "--json", action="store_true", help="print scores, areas and boxes (COCO x,y,w,h) as JSON"
    )
    seg.add_argument("--threshold", type=float, default=0.0, help="mask logit threshold (default 0)")
    seg.add_argument("--max-hole-area", type=float, default=0.0, help="fill holes up to this low-res area")
    seg.add_argument(
        "--max-sprinkle-area", type=float, default=0.0, help="remove specks up to this low-res area"
    )
    _add_model_args(seg)

    sv = sub.add_parser(
        "serve",
        help="run the HTTP API server",
        description="Serve the JSON API (OpenAPI docs at /docs). Binds 127.0.0.1 unless --host says otherwise. "
        "With --fast the server also compiles the clicks' mask upsampling (torch.compile) at start-up: "
        "a few seconds once, ~3 ms saved on every 2250x1500 click.",
        epilog="example: samkit serve --model sam2.1-hiera-tiny --port 8000",
    )
    sv.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)"
    )
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument(
        "--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set SAMKIT_API_KEY)"
    )
    sv.add_argument("--cache-dir", default=None, help="also keep image embeddings on disk here")
    sv.add_argument("--max-batch", type=int, default=4, help="images encoded together (default 4)")
    sv.add_argument(
        "--max-wait-ms", type=float, default=10.0, help="wait this long to fill a batch (default 10)"
    )
    sv.add_argument(
        "--max-queue", type=int, default=16, help="queued uploads before answering 503 (default 16)"
    )
    sv.add_argument("--max-upload-mb", type=float, default=32.0, help="largest upload (default 32 MB)")
    sv.add_argument("--cors-origin", action="append", default=[], help="allow this web origin (repeatable)")
    _add_model_args(sv)

    au = sub.add_parser(
        "auto",
        help="segment everything in an image (automatic masks)",
        description="Generate masks for everything in an image from a grid of clicks; writes COCO-format "
        "JSON with RLE masks (readable by pycocotools) and an overlay with every mask in its own colour.",
        epilog="example: samkit auto photo.jpg --out annotations.json --overlay everything.png",
    )
    au.add_argument("image", help="image file")
    au.add_argument("--out", default=None, help="COCO JSON file to write")
    au.add_argument("--overlay", default=None, help="PNG with every mask drawn")
    _add_generator_args(au)
    au.add_argument("--json", action="store_true", help="print a summary as JSON")
    _add_model_args(au)

    tr = sub.add_parser(
        "track",
        help="track prompted objects through a video",
        description="Track objects through a video (file or folder of frames) from clicks/boxes on any frames; "
        "writes per-object PNG masks per frame, annotations.json (COCO RLE, SA-V masklet layout) "
        "and overlay.mp4.",
        epilog="example: samkit track clip.mp4 --prompt 0:1:210,350 --prompt 0:2:box=300,0,500,400 --out result/",
    )
    tr.add_argument("video", help="video file (mp4, mov, ...) or folder of frames (00000.jpg, ...)")
    tr.add_argument(
        "--prompt",
        action="append",
        default=[],
        metavar="FRAME:OBJ:X,Y[:LABEL]|FRAME:OBJ:box=X0,Y0,X1,Y1",
        help="a click (LABEL 1 object, 0 background) or a box for object OBJ on frame FRAME. Repeatable",
    )
    tr.add_argument("--out", required=True, help="output folder")
    tr.add_argument("--no-overlay", action="store_true", help="do not write overlay.mp4")
    tr.add_argument("--no-png", action="store_true", help="do not write per-frame PNG masks")
    tr.add_argument(
        "--offload-state", action="store_true", help="keep tracking state in CPU memory (GPU runs)"
    )
    tr.add_argument(
        "--keep-all-outputs",
        action="store_true",
        help="keep every frame's memory like the reference (unbounded memory on long videos)",
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_model_args(tr)

    ba = sub.add_parser(
        "batch",
        help="segment many images (a folder, list, glob or bucket), resumable",
        description="Segment every image of the inputs from a prompt file (--prompts) or automatically "
        "(--auto). Writes OUT/results/<image>.json (COCO RLE masks) and OUT/manifest.jsonl (one line per "
        "image: status, masks, seconds, error). Interrupt it and run the same command again: it goes on "
        "where it stopped. --engine ray runs the same job on a Ray cluster. Exit status: 0 all done, "
        "3 some images failed (listed in the manifest), 130 interrupted.",
        epilog="examples: samkit batch photos/ --out results/ --prompts prompts.jsonl\n"
        "          samkit batch 'photos/**/*.jpg' --out results/ --auto --coco results/coco.json\n"
        "          samkit batch s3://bucket/photos/ --out results/ --auto --engine ray --address auto",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ba.add_argument(
        "inputs", nargs="+", help="folder(s) (searched recursively), glob(s), list file(s) or fsspec URL(s)"
    )
    ba.add_argument("--out", required=True, help="output folder")
    mode = ba.add_mutually_exclusive_group(required=True)
    mode.add_argument(
        "--prompts",
        default=None,
        help='JSON lines: {"image": "rel/path.jpg", "points": [[x, y]], "labels": [1], "box": [x0, y0, x1, y1]}',
    )
    mode.add_argument("--auto", action="store_true", help="automatic masks for everything in each image")
    ba.add_argument("--coco", default=None, help="also write one COCO dataset file of all results")
    ba.add_argument("--png", action="store_true", help="also write each mask as a PNG (OUT/masks/)")
    ba.add_argument("--overlay", action="store_true", help="also write overlays (OUT/overlays/)")
    ba.add_argument("--overwrite", action="store_true", help="discard an earlier job's results in OUT")
    ba.add_argument(
        "--batch-size", type=int, default=0, help="images encoded together (default: 1 on CPU, 64 on GPU)"
    )
    ba.add_argument(
        "--processes",
        type=int,
        default=None,
        help="local engine: worker processes, each with a model (default: 2 on a multi-core CPU, 1 on GPU)",
    )
    ba.add_argument("--workers", type=int, default=2, help="reader threads per process (default 2)")
    ba.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="where to run (default local)"
    )
    ba.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: a local Ray")
    ba.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per Ray model actor (default 1)")
    ba.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray model actor (default 0)")
    ba.add_argument("--concurrency", type=int, default=1, help="Ray model actors (default 1)")
    ba.add_argument("--ray-batch-size", type=int, default=4, help="images per Ray actor call (default 4)")
    ba.add_argument("--ext", action="append", default=None, help="image extension to look for (repeatable)")
    ba.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_generator_args(ba, note="--auto: ")
    _add_model_args(ba)

    be = sub.add_parser(
        "bench",
        help="measure speed here, side by side with the reference sam2 when installed",
        description="Encode latency and batched throughput, click latency (1 and 8 points), automatic masks "
        "and video seconds per frame (1 and 4 objects), median of --runs; the reference sam2 package on the "
        "same weights when it is importable. Prints a table and a JSON line.",
    )
    be.add_argument("--image", default=None, help="image to use (default: a generated 1800x1200 picture)")
    be.add_argument("--runs", type=int, default=3, help="timed runs per figure after a warm-up (default 3)")
    be.add_argument("--no-reference", action="store_true", help="do not measure the reference")
    be.add_argument("--no-auto", action="store_true", help="skip automatic masks (slow)")
    be.add_argument(
        "--no-compile",
        action="store_true",
        help="time the fast path without its torch.compile'd mask upsampling (as `segment --fast` runs it)",
    )
    _add_model_args(be)

    models = sub.add_parser(
        "models",
        help="list the model variants and which are downloaded",
        description="List the official variants, their parameters and whether weights are cached.",
    )
    models.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_model_args(models)

    dl = sub.add_parser(
        "download",
        help="download official weights into the Hugging Face cache",
        description="Fetch the official checkpoint of a variant (once) and print its path.",
    )
    dl.add_argument("name", nargs="?", default=None, help="variant to fetch (default: --model)")
    dl.add_argument("--force", action="store_true", help="download again even if cached")
    _add_model_args(dl)
    return parser


def _precision(args: argparse.Namespace) -> str:
    return "bf16" if getattr(args, "fast", False) else "fp32"


def _version() -> str:
    from . import __version__

    return __version__


# --- commands --------------------------------------------------------------------------------


def _cmd_segment(args: argparse.Namespace) -> int:
    import numpy as np

    from .checkpoints import load_model
    from .predictors import ImagePredictor
    from .transforms import load_image
    from .visualize import mask_stats, mask_to_png, overlay_masks

    if not args.point and args.box is None:
        raise CLIError("give at least one --point X,Y or a --box X0,Y0,X1,Y1")
    if not (args.out or args.overlay or args.json):
        raise CLIError("nothing to write: pass --out, --overlay and/or --json")
    image = load_image(args.image)
    h, w = image.shape[:2]
    for x, y, _ in args.point:
        if not (0 <= x < w and 0 <= y < h):
            raise CLIError(f"point {x:g},{y:g} lies outside the {w}x{h} image")

    model = load_model(args.model, checkpoint=args.checkpoint, device=args.device, precision=_precision(args))
    predictor = ImagePredictor(
        model,
        mask_threshold=args.threshold,
        max_hole_area=args.max_hole_area,
        max_sprinkle_area=args.max_sprinkle_area,
    )
    predictor.set_image(image)
    points = [[x, y] for x, y, _ in args.point] or None
    labels = [lab for _, _, lab in args.point] or None
    # One click is ambiguous: ask for 3 candidates and keep the best, as SAM's authors advise.
    multimask = args.multimask or (len(args.point) == 1 and args.box is None)
    masks, scores, _ = predictor.predict(
        point_coords=points, point_labels=labels, box=args.box, multimask_output=multimask
    )
    order = [int(i) for i in np.argsort(-scores, kind="stable")]
    keep = order if args.multimask else order[:1]

    written = []
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        if args.multimask:
            for rank, i in enumerate(keep):
                path = out.with_name(f"{out.stem}_{rank}{out.suffix or '.png'}")
                mask_to_png(masks[i]).save(path)
                written.append(str(path))
        else:
            mask_to_png(masks[keep[0]]).save(out)
            written.append(str(out))
    if args.overlay:
        ov = Path(args.overlay)
        ov.parent.mkdir(parents=True, exist_ok=True)
        overlay_masks(
            image,
            [masks[i] for i in keep],
            points=points,
            labels=labels,
            boxes=[args.box] if args.box else None,
        ).save(ov)
        written.append(str(ov))
    if args.json:
        result = {
            "image": str(args.image),
            "width": w,
            "height": h,
            "model": model.cfg.name,
            "masks": [
                {"rank": r, "score": float(scores[i]), **mask_stats(masks[i])} for r, i in enumerate(keep)
            ],
            "files": written,
        }
        print(json.dumps(result, indent=2))
    else:
        best = keep[0]
        print(
            f"mask score {scores[best]:.3f}, area {int(masks[best].sum())} px"
            + (f"; wrote {', '.join(written)}" if written else "")
        )
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    import os

    import uvicorn

    from .server import ServerConfig, create_app

    if not 0 < args.port < 65536:
        raise CLIError(f"--port must be 1-65535, got {args.port}")
    config = ServerConfig(
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        api_key=args.api_key or os.environ.get("SAMKIT_API_KEY") or None,
        cache_dir=args.cache_dir,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_queue=args.max_queue,
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        cors_origins=tuple(args.cors_origin),
    )
    # load the model before binding, so a bad --model/--checkpoint fails with one line
    from .checkpoints import load_model

    # a server's clicks pay for compiling the mask upsampling once (done at start-up)
    model = load_model(
        config.model,
        checkpoint=config.checkpoint,
        device=config.device,
        precision=_precision(args),
        compile=_precision(args) == "bf16",
    )
    uvicorn.run(create_app(config, model=model), host=args.host, port=args.port, log_level="info")
    return 0


def _cmd_auto(args: argparse.Namespace) -> int:
    import time

    from ._files import atomic_write
    from .checkpoints import load_model
    from .predictors import AutomaticMaskGenerator
    from .transforms import load_image
    from .visualize import overlay_masks

    if not (args.out or args.overlay or args.json):
        raise CLIError("nothing to write: pass --out, --overlay and/or --json")
    image = load_image(args.image)
    model = load_model(args.model, checkpoint=args.checkpoint, device=args.device, precision=_precision(args))
    gen = AutomaticMaskGenerator(
        model,
        **_generator_kwargs(args),
        output_mode="coco_rle",
        fast=args.fast,
    )
    t = time.perf_counter()
    anns = gen.generate(image)
    seconds = time.perf_counter() - t
    h, w = image.shape[:2]
    written = []
    if args.out:
        doc = coco_document(anns, str(Path(args.image).name), w, h, model.cfg.name)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(out, lambda p: p.write_text(json.dumps(doc)))
        written.append(str(out))
    if args.overlay:
        from . import rle

        order = sorted(range(len(anns)), key=lambda i: -anns[i]["area"])  # small masks drawn last, on top
        ov = Path(args.overlay)
        ov.parent.mkdir(parents=True, exist_ok=True)
        overlay_masks(image, [rle.decode(anns[i]["segmentation"]) for i in order], alpha=0.45).save(ov)
        written.append(str(ov))
    summary = {
        "image": str(args.image),
        "width": w,
        "height": h,
        "model": model.cfg.name,
        "masks": len(anns),
        "seconds": round(seconds, 3),
        "stages": {k: round(v, 3) for k, v in gen.timings.items()},
        "files": written,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{len(anns)} masks in {seconds:.1f} s" + (f"; wrote {', '.join(written)}" if written else ""))
    return 0


def coco_document(anns: list[dict], file_name: str, width: int, height: int, model_name: str) -> dict:
    """A COCO dataset dict (one image, one category) holding automatic-mask annotations."""
    return {
        "info": {"description": f"samkit automatic masks ({model_name})"},
        "images": [{"id": 1, "file_name": file_name, "width": width, "height": height}],
        "categories": [{"id": 1, "name": "object"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, **a} for i, a in enumerate(anns)
        ],
    }


def _cmd_track(args: argparse.Namespace) -> int:
    from .checkpoints import load_model
    from .predictors import VideoPredictor
    from .track import TrackingInterrupted, parse_prompt, track_to_folder
    from .video_io import open_video

    if not args.prompt:
        raise CLIError("give at least one --prompt FRAME:OBJ:X,Y or FRAME:OBJ:box=X0,Y0,X1,Y1")
    prompts = [parse_prompt(p) for p in args.prompt]
    video = open_video(args.video)  # fail on unreadable input before loading the model
    model = load_model(args.model, checkpoint=args.checkpoint, device=args.device, precision=_precision(args))
    predictor = VideoPredictor(model, keep_all_outputs=args.keep_all_outputs, progress=not args.quiet)
    try:
        result = track_to_folder(
            predictor,
            video,
            prompts,
            args.out,
            write_pngs=not args.no_png,
            write_overlay=not args.no_overlay,
            offload_state_to_cpu=args.offload_state,
            progress=not args.quiet,
        )
    except TrackingInterrupted as e:
        raise CLIError(str(e)) from None
    print(
        f"tracked {len(result.obj_ids)} object(s) through {result.frames_done} of {result.num_frames} frames; "
        f"wrote {result.annotations}" + (f" and {result.overlay}" if result.overlay else "")
    )
    return 0


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import BatchInterrupted, BatchSettings, RayOptions, run_batch

    if args.batch_size < 0:
        raise CLIError("--batch-size must be >= 0")
    if args.workers < 1:
        raise CLIError("--workers must be >= 1")
    if args.processes is not None and args.processes < 1:
        raise CLIError("--processes must be >= 1")
    auto = _generator_kwargs(args) if args.auto else {}
    settings = BatchSettings(
        model=args.model,
        checkpoint=args.checkpoint,
        device=args.device,
        precision=_precision(args),
        mode="auto" if args.auto else "prompts",
        auto=auto,
        batch_size=args.batch_size,
        png=args.png,
        overlay=args.overlay,
    )
    model, processes = None, args.processes
    if args.engine == "local":
        from .batch.local import default_processes
        from .checkpoints import load_model

        # load here, so a bad --model/--checkpoint fails with one line before any work starts
        model = load_model(
            args.model, checkpoint=args.checkpoint, device=args.device, precision=_precision(args)
        )
        if args.auto:
            from .predictors import AutomaticMaskGenerator

            AutomaticMaskGenerator(model, **auto)  # validates the arguments before any image is read
        # with several worker processes run_batch leaves this model unused: each worker loads its own
        processes = processes or default_processes(args.device)
    exts = tuple(e if e.startswith(".") else f".{e}" for e in args.ext) if args.ext else None
    try:
        summary = run_batch(
            args.inputs,
            args.out,
            settings,
            prompts=args.prompts,
            engine=args.engine,
            workers=args.workers,
            processes=processes,
            ray=RayOptions(
                address=args.address,
                num_cpus=args.num_cpus,
                num_gpus=args.num_gpus,
                concurrency=args.concurrency,
                batch_size=args.ray_batch_size,
            ),
            coco=args.coco,
            overwrite=args.overwrite,
            progress=not args.quiet,
            model=model,
            **({"extensions": exts} if exts else {}),
        )
    except BatchInterrupted as e:
        s = e.summary
        print(
            f"samkit batch: interrupted; {s.ok + s.failed} of {s.todo} images written to {args.out}. "
            "Run the same command again to continue.",
            file=sys.stderr,
        )
        return 130
    rate = f", {summary.images_per_second:.2f} images/s" if summary.ok else ""
    print(
        f"{summary.ok} ok, {summary.failed} failed, {summary.skipped} already done of {summary.images} images; "
        f"{summary.masks} masks in {summary.seconds:.1f} s{rate}; manifest: {Path(args.out) / 'manifest.jsonl'}"
        + (f"; COCO file {args.coco} ({summary.coco['annotations']} annotations)" if summary.coco else "")
    )
    if summary.failed:
        print(
            f"samkit batch: {summary.failed} image(s) failed; their reasons are in the manifest "
            "(status 'failed'); a rerun retries them",
            file=sys.stderr,
        )
        return 3
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from . import bench
    from .checkpoints import load_model
    from .transforms import load_image

    if args.runs < 1:
        raise CLIError("--runs must be at least 1")
    image = load_image(args.image) if args.image else None
    model = load_model(args.model, checkpoint=args.checkpoint, device=args.device, precision=_precision(args))
    res = bench.run(
        model,
        image,
        runs=args.runs,
        reference=not args.no_reference,
        auto=not args.no_auto,
        compile=not args.no_compile,
    )
    print(
        f"{res.info['model']} on {res.info['device']}"
        + (f" ({res.info['gpu']})" if "gpu" in res.info else "")
        + f", {res.info['threads']} threads, torch {res.info['torch']}, "
        f"image {res.info['image'][1]}x{res.info['image'][0]}"
    )
    print(res.table())
    if "fast_vs_exact" in res.info:
        a = res.info["fast_vs_exact"]
        print(
            f"fast vs exact, best mask of 9 random clicks: IoU min {a['min_iou']:.4f} mean {a['mean_iou']:.4f}, "
            f"scores within {a['max_score_diff']:.4f}"
        )
    if "fast_compile_s" in res.info:
        c = res.info["fast_compile_s"]
        print(
            f"fast path: mask upsampling compiled in {c} s before timing (--no-compile: eager)"
            if isinstance(c, float)
            else f"fast path: {c}"
        )
    for key in ("reference", "reference_video"):
        if key in res.info:
            print(res.info[key])
    if res.info.get("reference_frames_load_s"):
        print(
            f"the reference reads and resizes every frame before tracking ({res.info['reference_frames_load_s']:.3f} "
            "s per frame, not in its video figures); samkit reads each frame while it tracks (in its figures)"
        )
    print("JSON " + json.dumps({"info": res.info, "rows": res.rows}))
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    import torch

    from .checkpoints import cached_checkpoint
    from .configs import VARIANTS, variant_names
    from .modeling import SAM2Model

    rows = []
    for name in variant_names():
        cfg = VARIANTS[name]
        with torch.device("meta"):
            n = sum(p.numel() for p in SAM2Model(cfg).parameters())
        cached = cached_checkpoint(name)
        rows.append(
            {
                "name": name,
                "hf_repo": cfg.hf_repo,
                "checkpoint": cfg.checkpoint_filename,
                "params_m": round(n / 1e6, 1),
                "cached": str(cached) if cached else None,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'model':<24}{'params':>9}  {'hugging face repo':<32}cached")
    for r in rows:
        print(f"{r['name']:<24}{r['params_m']:>8}M  {r['hf_repo']:<32}{r['cached'] or 'no'}")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    from .checkpoints import download_checkpoint

    path = download_checkpoint(args.name or args.model, force=args.force)
    print(path)
    return 0


COMMANDS = {
    "segment": _cmd_segment,
    "auto": _cmd_auto,
    "serve": _cmd_serve,
    "track": _cmd_track,
    "batch": _cmd_batch,
    "bench": _cmd_bench,
    "models": _cmd_models,
    "download": _cmd_download,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (tests call this in-process)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    from .checkpoints import CheckpointError, DownloadError
    from .runtime import tune_allocator

    tune_allocator()
    try:
        return COMMANDS[args.command](args)
    except (
        CLIError,
        CheckpointError,
        DownloadError,
        ValueError,
        TypeError,
        FileNotFoundError,
        OSError,
        IndexError,
        KeyError,
        RuntimeError,
    ) as e:
        # one line, whatever the exception carried: multi-line messages are joined
        msg = (
            " ".join(line.strip() for line in str(e).strip().splitlines() if line.strip()) or type(e).__name__
        )
        print(f"samkit {args.command}: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"samkit {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
