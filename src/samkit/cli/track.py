"""``samkit track``: objects tracked through a video, written to a folder; or, with ``--dataset``,
every video of a DAVIS / SA-V dataset from its first masks (:mod:`samkit.video.dataset`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import live
from ._common import (
    CLIError,
    add_model_args,
    add_text_args,
    check_text_args,
    load,
    model_name,
    precision_of,
    reject_text_args_without_text,
    text_predictor,
)


def add_parser(sub) -> argparse.ArgumentParser:
    tr = sub.add_parser(
        "track",
        help="track prompted objects through a video",
        description="Track objects through a video (file or folder of frames) from clicks/boxes on any frames; "
        "writes per-object PNG masks per frame, annotations.json (COCO RLE, SA-V masklet layout) "
        "and overlay.mp4. With --dataset, track every video of a DAVIS or SA-V dataset from each "
        "object's first annotated mask (like Meta's tools/vos_inference.py) and write the masks as the "
        "benchmark's PNGs; resumable.",
        epilog="examples: samkit track clip.mp4 --prompt 0:1:210,350 --prompt 0:2:box=300,0,500,400 --out result/\n"
        "          samkit track rtsp://camera.local/stream --live --prompt 0:1:box=300,0,500,400 --out live/\n"
        "          samkit track --dataset davis:JPEGImages/480p:Annotations/480p --out results/davis\n"
        "          samkit track --dataset sav:sav_val --out results/sav_val --engine ray --address auto",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tr.add_argument(
        "video",
        nargs="?",
        default=None,
        help="video file (mp4, mov, ...) or folder of frames (00000.jpg, ...); with --live a camera "
        "(/dev/video0), a stream URL (rtsp://, http(s)://) or a file still being written",
    )
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
    tr.add_argument(
        "--start-frame",
        type=int,
        default=None,
        help="propagate from this frame (default: the first prompted frame); earlier frames are tracked "
        "backwards from it",
    )
    tr.add_argument(
        "--max-frames",
        type=int,
        default=None,
        help="track at most N frames from the start, in each direction",
    )
    tr.add_argument("--reverse-only", action="store_true", help="only track backwards from the start frame")
    tr.add_argument(
        "--text",
        default=None,
        help="track everything these words name, e.g. 'dog' (detected on frame 0; needs samkit[text])",
    )
    tr.add_argument(
        "--detect-every",
        type=int,
        default=None,
        metavar="N",
        help="--text: detect again every N frames; newcomers get new ids (default: frame 0 only)",
    )
    tr.add_argument(
        "--match-iou",
        type=float,
        default=0.5,
        help="--text: a detection overlapping a tracked object's mask by more than this IoU is that object",
    )
    add_text_args(tr)
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    live.add_args(tr)
    ds = tr.add_argument_group("datasets (--dataset)")
    ds.add_argument(
        "--dataset",
        default=None,
        metavar="SPEC",
        help="davis:FRAMES_ROOT:ANNOTATIONS_ROOT, sav:ROOT or sav:FRAMES_ROOT:ANNOTATIONS_ROOT: track every "
        "video, each object from its first annotated mask; writes OUT/<video>/<frame>.png",
    )
    ds.add_argument(
        "--per-object-png",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write OUT/<video>/<obj:03d>/<frame>.png (0/1, SA-V) instead of one palette PNG per frame "
        "(DAVIS) (default: the input's layout)",
    )
    ds.add_argument("--score-thresh", type=float, default=None, help="masks are logits > this (default 0.0)")
    ds.add_argument(
        "--videos",
        default=None,
        metavar="A,B|@FILE",
        help="only these videos (comma-separated, or @FILE: one a line)",
    )
    ds.add_argument(
        "--engine", choices=["local", "ray"], default="local", help="where to run (default local)"
    )
    ds.add_argument("--address", default=None, help="Ray cluster address (e.g. auto); default: a local Ray")
    ds.add_argument("--num-cpus", type=float, default=1.0, help="CPUs per Ray model actor (default 1)")
    ds.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per Ray model actor (default 0)")
    ds.add_argument("--concurrency", type=int, default=1, help="Ray model actors (default 1)")
    add_model_args(tr)
    return tr


def _video_list(text: str | None) -> list[str] | None:
    if text is None:
        return None
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise CLIError(f"--videos: list file not found: {path}")
        names = [line.strip() for line in path.read_text().splitlines()]
    else:
        names = [n.strip() for n in text.split(",")]
    names = [n for n in names if n]
    if not names:
        raise CLIError("--videos names no video")
    return names


def _run_dataset(args: argparse.Namespace) -> int:
    from ..batch import RayOptions
    from ..video.dataset import ModelSource, parse_dataset_spec, track_dataset

    if args.prompt:
        raise CLIError(
            "--prompt cannot be used with --dataset: each object is prompted with its first annotated mask"
        )
    if args.text is not None or args.detect_every is not None:
        raise CLIError(
            "--text and --detect-every do not apply to --dataset (its annotations are the prompts)"
        )
    reject_text_args_without_text(args)
    for flag, given in (("--no-png", args.no_png), ("--no-overlay", args.no_overlay)):
        if given:
            raise CLIError(f"{flag} does not apply to --dataset (it writes PNG masks only)")
    for flag, given in (
        ("--start-frame", args.start_frame is not None),
        ("--max-frames", args.max_frames is not None),
        ("--reverse-only", args.reverse_only),
    ):
        if given:
            raise CLIError(f"{flag} does not apply to --dataset (every frame of each video is tracked)")
    if args.concurrency < 1:
        raise CLIError("--concurrency must be >= 1")
    dataset = parse_dataset_spec(args.dataset)  # a bad spec or folder fails before the model loads
    source = ModelSource(
        model=model_name(args), checkpoint=args.checkpoint, device=args.device, precision=precision_of(args)
    )
    summary = track_dataset(
        dataset,
        args.out,
        source,
        videos=_video_list(args.videos),
        per_object_png=args.per_object_png,
        score_thresh=0.0 if args.score_thresh is None else args.score_thresh,
        engine=args.engine,
        ray=RayOptions(
            address=args.address, num_cpus=args.num_cpus, num_gpus=args.num_gpus, concurrency=args.concurrency
        ),
        offload_state_to_cpu=args.offload_state,
        keep_all_outputs=args.keep_all_outputs,
        progress=not args.quiet,
    )
    print(
        f"tracked {summary.done} video(s), {summary.skipped} already done, of {summary.videos}: "
        f"{summary.objects} objects, {summary.frames} frames in {summary.seconds:.1f} s; masks in {args.out}"
    )
    return 0


def run(args: argparse.Namespace) -> int:
    from ..predictors import VideoPredictor
    from ..video.io import open_video
    from ..video.output import TrackingInterrupted, parse_frame_prompts, track_to_folder

    if args.live:
        return live.run(args)
    live.reject_live_args(args)
    if args.video is not None and args.dataset is not None:
        raise CLIError("give either a video or --dataset SPEC, not both")
    if args.dataset is not None:
        return _run_dataset(args)
    if args.video is None:
        raise CLIError("give a video (file or folder of frames) or --dataset SPEC")
    only = {
        "--per-object-png": args.per_object_png is not None,
        "--score-thresh": args.score_thresh is not None,
        "--videos": args.videos is not None,
        "--engine ray": args.engine != "local",
    }
    for flag, given in only.items():
        if given:
            raise CLIError(f"{flag} applies only with --dataset")
    if args.text is not None:
        return _run_text(args)
    if args.detect_every is not None:
        raise CLIError("--detect-every goes with --text")
    reject_text_args_without_text(args)
    if not args.prompt:
        raise CLIError(
            "give at least one --prompt FRAME:OBJ:X,Y or FRAME:OBJ:box=X0,Y0,X1,Y1 (or --text WORDS)"
        )
    if args.max_frames is not None and args.max_frames < 1:
        raise CLIError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.start_frame is not None and args.start_frame < 0:
        raise CLIError(f"--start-frame must be >= 0, got {args.start_frame}")
    prompts = parse_frame_prompts(args.prompt)
    video = open_video(args.video)  # fail on unreadable input before loading the model
    model = load(args)
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
            start_frame=args.start_frame,
            max_frames=args.max_frames,
            reverse_only=args.reverse_only,
        )
    except TrackingInterrupted as e:
        raise CLIError(str(e)) from None
    print(
        f"tracked {len(result.obj_ids)} object(s) through {result.frames_done} of {result.num_frames} frames; "
        f"wrote {result.annotations}" + (f" and {result.overlay}" if result.overlay else "")
    )
    return 0


def _run_text(args: argparse.Namespace) -> int:
    """``track --text``: detect what the words name on frame 0 (and every --detect-every frames), track it."""
    from ..predictors import VideoPredictor
    from ..text import TextError
    from ..text.video import track_text
    from ..video.io import open_video

    if args.prompt:
        raise CLIError("--text is the prompt: leave out --prompt")
    for flag, given in (
        ("--start-frame", args.start_frame is not None),
        ("--max-frames", args.max_frames is not None),
        ("--reverse-only", args.reverse_only),
    ):
        if given:
            raise CLIError(f"{flag} does not apply to --text (detection starts on frame 0)")
    if args.detect_every is not None and args.detect_every < 1:
        raise CLIError(f"--detect-every must be >= 1, got {args.detect_every}")
    if not 0.0 <= args.match_iou <= 1.0:
        raise CLIError(f"--match-iou must be in [0, 1], got {args.match_iou}")
    check_text_args(args)
    video = open_video(args.video)
    tp = text_predictor(args, load)
    predictor = VideoPredictor(
        tp.predictor.model, keep_all_outputs=args.keep_all_outputs, progress=not args.quiet
    )
    try:
        r = track_text(
            predictor,
            video,
            tp,
            args.text,
            args.out,
            detect_every=args.detect_every,
            match_iou=args.match_iou,
            write_pngs=not args.no_png,
            write_overlay=not args.no_overlay,
            progress=not args.quiet,
            offload_state_to_cpu=args.offload_state,
        )
    except TextError as e:
        raise CLIError(str(e)) from None
    if not r.obj_ids:
        where = "on frame 0" if args.detect_every is None else f"on any of every {args.detect_every}th frame"
        print(f"nothing found for {args.text!r} {where}; wrote {r.annotations} (no objects)")
        return 0
    found = ", ".join(f"{o}: {lab}" for o, lab in zip(r.obj_ids, r.labels))
    print(
        f"tracked {len(r.obj_ids)} object(s) ({found}) through {r.frames_done} of {r.num_frames} frames; "
        f"wrote {r.annotations}" + (f" and {r.overlay}" if r.overlay else "")
    )
    return 0
