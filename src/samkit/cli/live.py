"""``samkit track SOURCE --live``: track prompted objects in a camera, a network stream or a growing
file as frames arrive (:class:`samkit.StreamTracker`), until the stream ends or Ctrl-C.

Writes OUT/masks.ndjson (one line per frame: COCO RLE per object, flushed as it goes) and, at the
end (Ctrl-C or an error included), OUT/summary.json; optionally an overlay recording, a live MJPEG
view and the session's state for a later ``--restore-state``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from .._files import atomic_write
from ._common import CLIError, load


def add_args(tr: argparse.ArgumentParser) -> None:
    lv = tr.add_argument_group("live streams (--live)")
    lv.add_argument(
        "--live",
        action="store_true",
        help="VIDEO is a live source (/dev/video0, rtsp://, http(s)://, or a file still being written): "
        "track frames as they arrive; --prompt FRAME counts frames tracked",
    )
    lv.add_argument(
        "--drop-frames",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="when tracking is slower than the stream, skip to the newest frame (default: on for cameras "
        "and network streams, off for files)",
    )
    lv.add_argument("--max-fps", type=float, default=None, help="track at most this many frames per second")
    lv.add_argument(
        "--retries", type=int, default=5, help="reconnect attempts in a row before giving up (default 5)"
    )
    lv.add_argument(
        "--input-format", default=None, help="force FFmpeg's input format (v4l2, mjpeg, mpegts...)"
    )
    lv.add_argument("--record", default=None, metavar="FILE.mp4", help="also record the overlay video")
    lv.add_argument(
        "--serve-mjpeg",
        type=int,
        default=None,
        metavar="PORT",
        help="show the overlay live at http://127.0.0.1:PORT/ (an MJPEG stream any browser plays)",
    )
    lv.add_argument("--show", action="store_true", help="show the overlay in a window (needs opencv-python)")
    lv.add_argument("--save-state", default=None, metavar="FILE", help="save the session here when it stops")
    lv.add_argument(
        "--restore-state",
        default=None,
        metavar="FILE",
        help="continue a saved session (same model and checkpoint); frame numbers continue from it",
    )


def _check(args: argparse.Namespace) -> None:
    if args.video is None:
        raise CLIError("--live needs a SOURCE: /dev/video0, rtsp://..., http(s)://... or a file")
    if args.dataset is not None or args.text is not None:
        raise CLIError(
            "--live tracks one source from --prompt clicks and boxes: leave out --dataset and --text"
        )
    for flag, given in (
        ("--start-frame", args.start_frame is not None),
        ("--reverse-only", args.reverse_only),
        ("--no-png", args.no_png),
        ("--no-overlay", args.no_overlay),
        ("--keep-all-outputs", args.keep_all_outputs),
        ("--offload-state", args.offload_state),
        ("--detect-every", args.detect_every is not None),
        ("--match-iou", args.match_iou != 0.5),
        ("--per-object-png", args.per_object_png is not None),
        ("--score-thresh", args.score_thresh is not None),
        ("--videos", args.videos is not None),
        ("--engine ray", args.engine != "local"),
    ):
        if given:
            raise CLIError(f"{flag} does not apply to --live (frames are tracked as they come; see --record)")
    if args.max_frames is not None and args.max_frames < 1:
        raise CLIError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.max_fps is not None and not args.max_fps > 0:
        raise CLIError(f"--max-fps must be > 0, got {args.max_fps}")
    if args.retries < 0:
        raise CLIError(f"--retries must be >= 0, got {args.retries}")
    if not args.prompt and not args.restore_state:
        raise CLIError(
            "give at least one --prompt FRAME:OBJ:X,Y or FRAME:OBJ:box=X0,Y0,X1,Y1 (or --restore-state)"
        )
    if args.serve_mjpeg is not None and not 0 <= args.serve_mjpeg < 65536:
        raise CLIError(f"--serve-mjpeg needs a port number, got {args.serve_mjpeg}")


def reject_live_args(args: argparse.Namespace) -> None:
    """The live options given without --live are an error, not silently ignored."""
    for flag, given in (
        ("--drop-frames", args.drop_frames is not None),
        ("--max-fps", args.max_fps is not None),
        ("--retries", args.retries != 5),
        ("--input-format", args.input_format is not None),
        ("--record", args.record is not None),
        ("--serve-mjpeg", args.serve_mjpeg is not None),
        ("--show", args.show),
        ("--save-state", args.save_state is not None),
        ("--restore-state", args.restore_state is not None),
    ):
        if given:
            raise CLIError(f"{flag} goes with --live")


class _Window:
    """An OpenCV window showing the overlay (``--show``)."""

    def __init__(self) -> None:
        try:
            import cv2
        except ImportError:
            raise CLIError(
                "--show needs OpenCV (pip install opencv-python) and a display; "
                "--serve-mjpeg PORT shows the overlay in a browser instead"
            ) from None
        self.cv2 = cv2

    def show(self, picture) -> bool:
        """Returns False when the user closed the window (q or Esc)."""
        self.cv2.imshow("samkit live", picture[:, :, ::-1])
        return self.cv2.waitKey(1) & 0xFF not in (ord("q"), 27)

    def close(self) -> None:
        self.cv2.destroyAllWindows()


def run(args: argparse.Namespace) -> int:
    from ..stream import StreamError, StreamTracker
    from ..stream.outputs import MaskLog, MJPEGServer, Recorder, frame_record
    from ..stream.sources import LiveSource
    from ..video.output import parse_frame_prompts
    from ..visualize import PALETTE, overlay_masks

    _check(args)
    by_frame: dict[int, dict] = {}
    for p in parse_frame_prompts(args.prompt):
        by_frame.setdefault(p.frame, {})[p.obj_id] = p.prompt.as_dict()
    window = _Window() if args.show else None
    try:
        source = LiveSource(
            args.video,
            drop_frames=args.drop_frames,
            max_fps=args.max_fps,
            retries=args.retries,
            input_format=args.input_format,
            on_event=lambda line: print(f"samkit: {line}", file=sys.stderr, flush=True),
        )
    except StreamError as e:
        raise CLIError(str(e)) from None
    model = load(args)
    try:
        session = (
            StreamTracker.restore(model, args.restore_state) if args.restore_state else StreamTracker(model)
        )
    except StreamError as e:
        raise CLIError(f"--restore-state: {e}") from None
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = MaskLog(out / "masks.ndjson", append=bool(args.restore_state))
    recorder = None
    mjpeg = None
    if args.serve_mjpeg is not None:
        try:
            mjpeg = MJPEGServer(args.serve_mjpeg)
        except OSError as e:
            raise CLIError(f"--serve-mjpeg: {e}") from None
        print(f"samkit: live view at {mjpeg.url}", file=sys.stderr, flush=True)

    from tqdm.auto import tqdm

    bar = tqdm(desc="live", unit="frame", disable=args.quiet)
    first = session.frame_index + 1
    start = time.monotonic()
    error, stopped = None, "the stream ended"
    tracked = 0
    colour_of: dict = {}  # an object keeps its colour when others come and go
    try:
        for frame in source:
            index = session.frame_index + 1
            t0 = time.monotonic()
            masks = session.track(frame, by_frame.get(index))
            ms = (time.monotonic() - t0) * 1000
            log.write(frame_record(index, masks, time.monotonic() - start, ms))
            tracked += 1
            if args.record and recorder is None:
                recorder = Recorder(args.record, source.fps)  # the stream's rate is known once it is open
            if recorder is not None or mjpeg is not None or window is not None:
                # the frame as tracked (resized if it came in another size); colours follow the ids
                for o in masks:
                    colour_of.setdefault(o, PALETTE[len(colour_of) % len(PALETTE)])
                colors = [colour_of[o] for o in masks]
                picture = np.asarray(
                    overlay_masks(session.current_frame, list(masks.values()), colors=colors)
                )
                if recorder is not None:
                    recorder.write(picture)
                if mjpeg is not None:
                    mjpeg.update(picture)
                if window is not None and not window.show(picture):
                    stopped = "the window was closed"
                    break
            bar.update(1)
            bar.set_postfix(objects=len(masks), dropped=source.dropped, refresh=False)
            if args.max_frames is not None and tracked >= args.max_frames:
                stopped = f"--max-frames {args.max_frames} reached"
                break
    except KeyboardInterrupt:
        stopped = "interrupted (Ctrl-C)"
    except StreamError as e:
        error = str(e)
        stopped = "an error"
    except Exception as e:  # written to the summary, then reported as usual
        error = f"{type(e).__name__}: {e}"
        stopped = "an error"
        raise
    finally:
        bar.close()
        source.close()
        log.close()
        for closer in (recorder, mjpeg, window):
            if closer is not None:
                closer.close()
        seconds = time.monotonic() - start
        if args.save_state:
            session.save(args.save_state)
        summary = {
            "source": str(args.video),
            "model": model.cfg.name,
            "first_frame": first,
            "frames": tracked,
            "dropped": source.dropped,
            "skipped_by_max_fps": source.skipped,
            "reconnects": source.reconnects,
            "seconds": round(seconds, 3),
            "fps": round(tracked / seconds, 3) if seconds > 0 else None,
            "objects": [str(o) if not isinstance(o, int) else o for o in session.obj_ids],
            "resized_frames": session.resized_frames,
            "stopped": stopped,
            "error": error,
            "state": args.save_state,
        }
        atomic_write(out / "summary.json", lambda p: p.write_text(json.dumps(summary, indent=2)))
    if error is not None:
        raise CLIError(f"{error} (after {tracked} frames; results so far in {out})")
    never = sorted(f for f in by_frame if f > session.frame_index)
    if never:
        print(
            f"samkit: prompts for frames {never} were never used (the stream stopped first)", file=sys.stderr
        )
    print(
        f"tracked {len(session.obj_ids)} object(s) through {tracked} frames in {seconds:.1f} s "
        f"({summary['fps'] or 0:.1f} frames/s, {source.dropped} dropped); {stopped}; masks in {out / 'masks.ndjson'}"
    )
    return 130 if stopped.startswith("interrupted") else 0
