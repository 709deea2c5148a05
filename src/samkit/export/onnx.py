"""ONNX export of the image path: ``encoder.onnx`` and ``decoder.onnx`` with the input and output names
that third-party SAM 2 exports use, so clients written for them load these.

encoder.onnx
    ``image`` float32 (1, 3, S, S), resized to S x S and normalised (ImageNet mean and std) as the
    predictor does -> ``image_embed`` (1, 256, S/16, S/16) (the "no memory" embedding added, as
    ``set_image`` does), ``high_res_feats_0`` (1, 32, S/4, S/4), ``high_res_feats_1`` (1, 64, S/8,
    S/8). S is the model's image size (1024 for the official models).

decoder.onnx
    ``image_embed``, ``high_res_feats_0``, ``high_res_feats_1``; ``point_coords`` float32 (1, N, 2) in
    pixels of the S x S input (a box is two points labelled 2 and 3); ``point_labels`` float32 (1, N)
    (1 object, 0 background, 2/3 box corners; the decoder adds SAM 2's padding point itself, as the
    predictor does, box or not: do not add one); ``mask_input`` float32 (1, 1, S/4, S/4) (a previous
    low-res mask's logits) with ``has_mask_input`` float32 (1,) (1 to use it, 0 not);
    ``orig_im_size`` float32 (2,) (height, width) -> ``iou_predictions`` (1, 3) and ``low_res_masks``
    (1, 3, S/4, S/4) (the three multimask candidates, logits) and ``masks`` (1, 3, H, W) logits at
    ``orig_im_size``.

The exported graphs are samkit's own modules, traced with the execution policy's plain paths (no
CPU-specific kernels), so onnxruntime's outputs equal samkit's PyTorch outputs up to float rounding.
The video parts (memory encoder, memory attention) are not exported yet.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import SAM2Model
from ..policy import override
from ..transforms import IMAGENET_MEAN, IMAGENET_STD

__all__ = ["ENCODER_OUTPUTS", "DECODER_INPUTS", "DECODER_OUTPUTS", "ExportError", "export_onnx"]

ENCODER_OUTPUTS = ["image_embed", "high_res_feats_0", "high_res_feats_1"]
DECODER_INPUTS = [
    "image_embed",
    "high_res_feats_0",
    "high_res_feats_1",
    "point_coords",
    "point_labels",
    "mask_input",
    "has_mask_input",
    "orig_im_size",
]
DECODER_OUTPUTS = ["iou_predictions", "low_res_masks", "masks"]
MIN_OPSET = 17  # LayerNormalization


class ExportError(ValueError):
    """The export cannot be made (an unsupported opset or model, a missing package)."""


class OnnxEncoder(nn.Module):
    """image (1, 3, S, S) -> image_embed, high_res_feats_0, high_res_feats_1."""

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        embed, (hr0, hr1) = self.model.encode_image(image)
        return embed, hr0, hr1


class OnnxDecoder(nn.Module):
    """The prompt encoder and mask decoder on an exported embedding, always three candidates."""

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        image_embed,
        high_res_feats_0,
        high_res_feats_1,
        point_coords,
        point_labels,
        mask_input,
        has_mask_input,
        orig_im_size,
    ):
        pe = self.model.sam_prompt_encoder
        # SAM 2's predictor ends every prompt with a padding point, a box's corners included
        sparse = pe.embed_points(point_coords, point_labels, pad=True)
        has = has_mask_input.reshape(-1, 1, 1, 1)
        no_mask = pe.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = has * pe.mask_downscaling(mask_input) + (1 - has) * no_mask
        masks, iou, _, _ = self.model.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=pe.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=[high_res_feats_0, high_res_feats_1],
        )
        size = orig_im_size.to(torch.int64)
        full = F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)
        return iou, masks, full


def _check_model(model: SAM2Model) -> None:
    if not isinstance(model, SAM2Model):
        raise ExportError(f"export needs a samkit SAM2Model (samkit.load_model), got {type(model).__name__}")
    if model.precision != "fp32":
        raise ExportError("export an fp32 model (load it without --fast): the graphs are float32")
    if not model.cfg.use_high_res_features_in_sam:
        raise ExportError(f"{model.cfg.name} has no high-resolution features: not the SAM 2 layout")


def require_onnx() -> None:
    """Raise :class:`ExportError` unless the ``onnx`` package (the exporter's) is installed."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'samkit[onnx]'") from None


def export_onnx(model: SAM2Model, out_dir: str | os.PathLike, opset: int = 18) -> dict:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``samkit-onnx.json`` (model, sizes, normalisation,
    names) into ``out_dir``; returns the JSON's content. Needs ``onnx`` (``pip install
    'samkit[onnx]'``)."""
    _check_model(model)
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is not supported: use {MIN_OPSET} or newer (default 18)")
    require_onnx()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    model = model.eval()
    dev = model.device
    s = model.image_size
    image = torch.randn(1, 3, s, s, generator=torch.Generator().manual_seed(0)).to(
        dev
    )  # (not the global RNG)
    with torch.no_grad():
        embed, hr0, hr1 = OnnxEncoder(model)(image)
    # decoder example: two clicks
    coords = torch.tensor([[[s * 0.4, s * 0.5], [s * 0.6, s * 0.4]]], device=dev)
    labels = torch.tensor([[1.0, 0.0]], device=dev)
    mask_input = torch.zeros(1, 1, s // 4, s // 4, device=dev)
    has_mask = torch.zeros(1, device=dev)
    orig = torch.tensor([s * 0.75, float(s)], device=dev)
    # plain kernels: the CPU's tiled upscaling and banded upsampling are for eager speed only
    plain = dict(upscale="untiled", upsample="interpolate", attention="fused", fused_linear=False)
    # with gradients on, the mask decoder takes its plain (training) expression: the inference path
    # writes masks into preallocated buffers, which a trace does not follow
    params = [p for p in model.parameters()]
    grads = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    try:
        _export_graphs(
            model, out, opset, plain, image, (embed, hr0, hr1, coords, labels, mask_input, has_mask, orig)
        )
    finally:
        for p, g in zip(params, grads):
            p.requires_grad_(g)
        model.train(was_training)
    info = {
        "model": model.cfg.name,
        "image_size": s,
        "mean": [255 * m for m in IMAGENET_MEAN],
        "std": [255 * v for v in IMAGENET_STD],
        "opset": opset,
        "encoder": {"file": "encoder.onnx", "inputs": ["image"], "outputs": ENCODER_OUTPUTS},
        "decoder": {"file": "decoder.onnx", "inputs": DECODER_INPUTS, "outputs": DECODER_OUTPUTS},
        "notes": "image: RGB resized to image_size x image_size, (x - mean) / std, NCHW float32; "
        "point_coords in pixels of that square (a box: two points labelled 2 and 3); the decoder adds "
        "SAM 2's padding point itself",
    }
    (out / "samkit-onnx.json").write_text(json.dumps(info, indent=2))
    return info


def _export_graphs(model, out: Path, opset: int, plain: dict, image, decoder_args) -> None:
    with override(**plain), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about Python values
        # (wrappers in eval mode: the exporter restores a module's mode afterwards, and a new module's
        # is training, which would switch the model into training mode)
        torch.onnx.export(
            OnnxEncoder(model).eval(),
            (image,),
            str(out / "encoder.onnx"),
            input_names=["image"],
            output_names=ENCODER_OUTPUTS,
            opset_version=opset,
            dynamo=False,
        )
        torch.onnx.export(
            OnnxDecoder(model).eval(),
            decoder_args,
            str(out / "decoder.onnx"),
            input_names=DECODER_INPUTS,
            output_names=DECODER_OUTPUTS,
            dynamic_axes={
                "point_coords": {1: "num_points"},
                "point_labels": {1: "num_points"},
                "masks": {2: "height", 3: "width"},
            },
            opset_version=opset,
            dynamo=False,
        )
