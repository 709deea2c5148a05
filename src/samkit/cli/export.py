"""``samkit export onnx``: the image path as ONNX graphs (:mod:`samkit.export.onnx`)."""

from __future__ import annotations

import argparse

from ._common import CLIError, add_model_args, load


def add_parser(sub) -> argparse.ArgumentParser:
    ex = sub.add_parser(
        "export",
        help="export the model for other runtimes (ONNX)",
        description="Write encoder.onnx and decoder.onnx (the names third-party SAM 2 exports use: image -> "
        "image_embed, high_res_feats_0/1; point_coords, point_labels, mask_input, has_mask_input, orig_im_size "
        "-> iou_predictions, low_res_masks, masks) and samkit-onnx.json (sizes and normalisation) into --out. "
        "Needs samkit[onnx].",
        epilog="example: samkit export onnx --model sam2.1-hiera-tiny --out onnx/",
    )
    ex.add_argument("format", choices=["onnx"], help="the format (onnx)")
    ex.add_argument("--out", required=True, help="output folder")
    ex.add_argument("--opset", type=int, default=18, help="ONNX opset (17 or newer; default 18)")
    add_model_args(ex, fast=False)
    return ex


def run(args: argparse.Namespace) -> int:
    from ..export import ExportError, export_onnx
    from ..export.onnx import MIN_OPSET, require_onnx

    # before the model loads (seconds): the checks export_onnx makes too
    if args.opset < MIN_OPSET:
        raise CLIError(f"--opset {args.opset} is not supported: use {MIN_OPSET} or newer (default 18)")
    try:
        require_onnx()
        model = load(args)
        info = export_onnx(model, args.out, opset=args.opset)
    except ExportError as e:
        raise CLIError(str(e)) from None
    print(
        f"exported {info['model']} ({info['image_size']} px) to {args.out}: encoder.onnx, decoder.onnx, "
        "samkit-onnx.json"
    )
    return 0
