"""``samkit export onnx``: the image and video paths as ONNX graphs (:mod:`samkit.export.onnx`)."""

from __future__ import annotations

import argparse

from ._common import CLIError, add_model_args, load


def add_parser(sub) -> argparse.ArgumentParser:
    ex = sub.add_parser(
        "export",
        help="export the model for other runtimes (ONNX)",
        description="Write encoder.onnx and decoder.onnx (the names third-party SAM 2 exports use: image -> "
        "image_embed, high_res_feats_0/1; point_coords, point_labels, mask_input, has_mask_input, orig_im_size "
        "-> iou_predictions, low_res_masks, masks), the video path's memory_encoder.onnx and "
        "memory_attention.onnx (a fixed-size memory bank; samkit.export.OnnxVideoTracker runs them) and "
        "samkit-onnx.json (sizes, normalisation, the bank's layout) into --out. Needs samkit[onnx].",
        epilog="example: samkit export onnx --model sam2.1-hiera-tiny --out onnx/",
    )
    ex.add_argument("format", choices=["onnx"], help="the format (onnx)")
    ex.add_argument("--out", required=True, help="output folder")
    ex.add_argument("--opset", type=int, default=18, help="ONNX opset (17 or newer; default 18)")
    ex.add_argument(
        "--cond-frames",
        type=int,
        default=2,
        help="slots of the video memory bank for prompted frames: tracking attends to at most this many, "
        "the closest in time (2 to 16; default 2)",
    )
    ex.add_argument(
        "--variants",
        default="",
        help="also write smaller copies in --out/<variant>/, comma-separated: fp16 (float16 weights, "
        "float32 arithmetic; masks kept), int8 (int8 weights, float32 arithmetic; a quarter of the size, "
        "masks move slightly), int8-dynamic (onnxruntime's dynamic quantisation: int8 arithmetic, masks "
        "move more; measure on your data)",
    )
    add_model_args(ex, fast=False)
    return ex


def run(args: argparse.Namespace) -> int:
    from ..export import ExportError, export_onnx
    from ..export.onnx import MIN_OPSET, VARIANTS, export_variant, require_onnx

    # before the model loads (seconds): the checks export_onnx makes too
    if args.opset < MIN_OPSET:
        raise CLIError(f"--opset {args.opset} is not supported: use {MIN_OPSET} or newer (default 18)")
    if not 2 <= args.cond_frames <= 16:
        raise CLIError(f"--cond-frames must be 2 to 16, got {args.cond_frames}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise CLIError(f"--variants: unknown {', '.join(unknown)} (use {', '.join(VARIANTS)})")
    try:
        require_onnx()
        model = load(args)
        info = export_onnx(model, args.out, opset=args.opset, cond_frames=args.cond_frames)
        written = [str(export_variant(args.out, v)) for v in variants]
    except ExportError as e:
        raise CLIError(str(e)) from None
    print(
        f"exported {info['model']} ({info['image_size']} px) to {args.out}: encoder.onnx, decoder.onnx, "
        "memory_encoder.onnx, memory_attention.onnx, samkit-onnx.json"
    )
    for folder in written:
        print(f"  and the same files in {folder}")
    return 0
