"""``samkit track``: objects tracked through a video, written to a folder."""

from __future__ import annotations

import argparse

from ._common import CLIError, add_model_args, load


def add_parser(sub) -> argparse.ArgumentParser:
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
    add_model_args(tr)
    return tr


def run(args: argparse.Namespace) -> int:
    from ..predictors import VideoPredictor
    from ..video.io import open_video
    from ..video.output import TrackingInterrupted, parse_frame_prompts, track_to_folder

    if not args.prompt:
        raise CLIError("give at least one --prompt FRAME:OBJ:X,Y or FRAME:OBJ:box=X0,Y0,X1,Y1")
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
        )
    except TrackingInterrupted as e:
        raise CLIError(str(e)) from None
    print(
        f"tracked {len(result.obj_ids)} object(s) through {result.frames_done} of {result.num_frames} frames; "
        f"wrote {result.annotations}" + (f" and {result.overlay}" if result.overlay else "")
    )
    return 0
