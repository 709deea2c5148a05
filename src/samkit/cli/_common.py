"""What the commands share: the model options, the automatic-mask options, prompt parsing and the
one-line error type."""

from __future__ import annotations

import argparse
import sys

from ..prompts import PromptError, parse_box, parse_point

DEFAULT_MODEL = "sam2.1-hiera-tiny"


class CLIError(Exception):
    """An error to report as one line."""


# --- argument parsing helpers ----------------------------------------------------------------


def _argparse_type(parse):
    """An argparse type from a samkit.prompts parser: its PromptError becomes argparse's usage error."""

    def convert(text: str):
        try:
            return parse(text)
        except PromptError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = parse.__name__  # argparse names the type in its messages
    return convert


point_arg = _argparse_type(parse_point)  # 'X,Y' or 'X,Y:LABEL'
box_arg = _argparse_type(parse_box)  # 'X0,Y0,X1,Y1'


def add_model_args(p: argparse.ArgumentParser, fast: bool = True) -> None:
    """--model, --checkpoint, --device and (with ``fast``) --fast."""
    p.add_argument(
        "--model",
        default=None,
        help=f"variant name or Hugging Face id, e.g. sam2.1-hiera-large (default: {DEFAULT_MODEL}, or "
        "the variant of --checkpoint)",
    )
    p.add_argument(
        "--checkpoint", default=None, help="official .pt checkpoint to load instead of downloading"
    )
    p.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:N or mps (default: cuda if available, else cpu)"
    )
    p.add_argument("--verbose", action="store_true", help="print every detail of an error")
    if not fast:
        return
    p.add_argument(
        "--fast",
        action="store_true",
        help="fast path: bfloat16 image encoder, and where bf16 is fast a bfloat16 mask decoder (clicks, auto) "
        "and memory attention (video); auto also scores its filters at low resolution. Masks differ slightly",
    )


def add_generator_args(p: argparse.ArgumentParser, note: str = "") -> None:
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


def generator_kwargs(args: argparse.Namespace) -> dict:
    """AutomaticMaskGenerator arguments from the options of :func:`add_generator_args`."""
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


def precision_of(args: argparse.Namespace) -> str:
    return "bf16" if getattr(args, "fast", False) else "fp32"


def version() -> str:
    from .. import __version__

    return __version__


def model_name(args: argparse.Namespace) -> str:
    """The variant the command runs: --model; without it, the variant a --checkpoint's shapes match
    (with a note when that is not the default), else the default. Sets ``args.model``."""
    if args.model is None:
        args.model = DEFAULT_MODEL
        if getattr(args, "checkpoint", None):
            from ..checkpoints import CheckpointError, checkpoint_variant

            try:
                found = checkpoint_variant(args.checkpoint)
            except CheckpointError:
                found = None  # reported when the model is loaded
            if found is not None and found != DEFAULT_MODEL:
                print(
                    f"samkit: {args.checkpoint} is a {found} checkpoint: using --model {found}",
                    file=sys.stderr,
                )
                args.model = found
    return args.model


def load(args: argparse.Namespace):
    """The model of the common options, with a one-line status on a terminal (loading takes seconds)."""
    from ..checkpoints import load_model

    name = model_name(args)
    if sys.stderr.isatty():  # progress for a person; logs and pipes get the one-line errors only
        source = args.checkpoint or "the Hugging Face cache"
        print(f"samkit: loading {name} from {source}...", file=sys.stderr, flush=True)
    return load_model(name, checkpoint=args.checkpoint, device=args.device, precision=precision_of(args))


def add_text_args(p: argparse.ArgumentParser) -> None:
    """The detector options of text prompts (--text itself is added by each command)."""
    p.add_argument(
        "--detector",
        default=None,
        help="Grounding DINO or OWLv2 id or local folder (default IDEA-Research/grounding-dino-tiny)",
    )
    p.add_argument(
        "--box-threshold", type=float, default=0.35, help="--text: detector box score (default 0.35)"
    )
    p.add_argument(
        "--text-threshold",
        type=float,
        default=0.25,
        help="--text: Grounding DINO's phrase score (default 0.25)",
    )
    p.add_argument(
        "--nms",
        type=float,
        default=None,
        help="--text: drop boxes overlapping a better one of any phrase by this IoU",
    )


def reject_text_args_without_text(args: argparse.Namespace) -> None:
    """The detector options given without --text: an error, not silently ignored."""
    given = [
        flag
        for flag, value, default in (
            ("--detector", getattr(args, "detector", None), None),
            ("--box-threshold", getattr(args, "box_threshold", 0.35), 0.35),
            ("--text-threshold", getattr(args, "text_threshold", 0.25), 0.25),
            ("--nms", getattr(args, "nms", None), None),
        )
        if value != default
    ]
    if given and getattr(args, "text", None) is None:
        raise CLIError(f"{given[0]} goes with --text")


def check_text_args(args: argparse.Namespace) -> None:
    """The text prompt and thresholds checked before anything loads (one-line errors)."""
    from ..text import TextError, parse_phrases
    from ..text.detector import check_threshold

    try:
        for name in ("box_threshold", "text_threshold"):
            check_threshold(f"--{name.replace('_', '-')}", getattr(args, name))
        if args.nms is not None:
            check_threshold("--nms", args.nms)
        parse_phrases(args.text)
    except TextError as e:
        raise CLIError(str(e)) from None


def text_predictor(args: argparse.Namespace, load_model):
    """A TextPredictor from the common options (the detector loaded after the model, on its device)."""
    from ..text import TextError, TextPredictor

    check_text_args(args)
    try:
        return TextPredictor(
            load_model(args),
            detector=args.detector,
            box_threshold=args.box_threshold,
            text_threshold=args.text_threshold,
            nms=args.nms,
        )
    except TextError as e:
        raise CLIError(str(e)) from None
