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

The video path adds what tracking needs (:class:`samkit.export.OnnxVideoTracker` runs it):

encoder.onnx
    a fourth output, ``vision_feats`` (1, 256, S/16, S/16): the frame's features without the "no
    memory" embedding, which memory attention and the memory encoder take.
decoder.onnx
    four more outputs: ``object_score_logits`` (1, 1) (the object is present where > 0);
    ``single_low_res_mask`` (1, 1, S/4, S/4) and ``single_iou`` (1, 1), the one-mask answer for two or
    more points (SAM 2's stability fallback included); ``obj_ptr`` (1, 2, 256), the object pointer of
    the best multimask candidate (row 0) and of the one-mask answer (row 1), absent objects' replaced
    by the learned no-object pointer.
memory_encoder.onnx
    ``vision_feats``, ``low_res_mask`` (1, 1, S/4, S/4) logits of the frame's mask (absent objects'
    set to -1024, as tracking does), ``object_score_logits`` (1, 1), ``is_mask_from_points`` (1,) (1:
    the mask answers prompts and is binarised, 0: a tracked mask, through a sigmoid) ->
    ``maskmem_features`` (1, 64, S/16, S/16).
memory_attention.onnx
    a fixed-size memory bank: ``vision_feats``; ``memory_feats`` (1, K, 64, S/16, S/16), ``memory_tpos``
    int64 (1, K) (0 for a prompted frame, 1..6 for the frame that many frames back... as ``num_maskmem
    - t_pos`` in SAM 2) and ``memory_valid`` (1, K) (1 for a used slot, 0 for an empty one);
    ``obj_ptrs`` (1, P, 256), ``obj_ptr_pos`` (1, P) (signed frame distance over
    ``max(min(num_frames, 16) - 1, 1)``) and ``obj_ptr_valid`` (1, P) -> ``pix_feat`` (1, 256, S/16,
    S/16), the features the decoder takes instead of ``image_embed`` on a tracked frame. K = C + 6 and
    P = C + 15 for C conditioning-frame slots (``cond_frames``, default 2); the rotary encoding is
    written in real arithmetic.

The exported graphs are samkit's own modules, traced with the execution policy's plain paths (no
CPU-specific kernels, real-valued rotary encoding), so onnxruntime's outputs equal samkit's PyTorch
outputs up to float rounding.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..modeling import SAM2Model
from ..policy import override
from ..transforms import IMAGENET_MEAN, IMAGENET_STD
from ..video import tracking as trk

__all__ = [
    "ENCODER_OUTPUTS",
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "MEMORY_ATTENTION_INPUTS",
    "MEMORY_ENCODER_INPUTS",
    "VARIANTS",
    "ExportError",
    "export_onnx",
    "export_variant",
]

ENCODER_OUTPUTS = ["image_embed", "high_res_feats_0", "high_res_feats_1", "vision_feats"]
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
DECODER_OUTPUTS = [
    "iou_predictions",
    "low_res_masks",
    "masks",
    "object_score_logits",
    "single_low_res_mask",
    "single_iou",
    "obj_ptr",
]
MEMORY_ENCODER_INPUTS = ["vision_feats", "low_res_mask", "object_score_logits", "is_mask_from_points"]
MEMORY_ATTENTION_INPUTS = [
    "vision_feats",
    "memory_feats",
    "memory_tpos",
    "memory_valid",
    "obj_ptrs",
    "obj_ptr_pos",
    "obj_ptr_valid",
]
# what a tracker running the exported graphs needs to know of the model's configuration
TRACKING_FIELDS = (
    "num_maskmem",
    "max_cond_frames_in_attn",
    "memory_temporal_stride_for_eval",
    "use_obj_ptrs_in_encoder",
    "max_obj_ptrs_in_encoder",
    "only_obj_ptrs_in_the_past_for_eval",
    "use_signed_tpos_enc_to_obj_ptrs",
    "multimask_output_in_sam",
    "multimask_output_for_tracking",
    "multimask_min_pt_num",
    "multimask_max_pt_num",
)
GRAPHS = ("encoder", "decoder", "memory_encoder", "memory_attention")
MIN_OPSET = 17  # LayerNormalization


class ExportError(ValueError):
    """The export cannot be made (an unsupported opset or model, a missing package)."""


class OnnxEncoder(nn.Module):
    """image (1, 3, S, S) -> image_embed, high_res_feats_0, high_res_feats_1."""

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        out = self.model.forward_image(image)
        top = out.features[-1]
        embed = top + self.model.no_mem_embed.reshape(1, -1, 1, 1)  # as encode_image
        hr0, hr1 = out.features[:-1]
        return embed, hr0, hr1, top


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
        model, dec = self.model, self.model.sam_mask_decoder
        # all four tokens' masks: the three candidates, and token 0's for the one-mask answer
        all_masks, all_ious, tokens, obj_logits = dec.predict_masks(
            image_embed,
            pe.get_dense_pe(),
            sparse,
            dense,
            repeat_image=False,
            high_res_features=[high_res_feats_0, high_res_feats_1],
        )
        masks, iou = all_masks[:, 1:], all_ious[:, 1:]
        if dec.dynamic_multimask_via_stability:
            single, single_iou = dec._dynamic_multimask_via_stability(all_masks, all_ious)
        else:
            single, single_iou = all_masks[:, :1], all_ious[:, :1]
        size = orig_im_size.to(torch.int64)
        full = F.interpolate(masks, size=(size[0], size[1]), mode="bilinear", align_corners=False)
        # the object pointers tracking stores: the best candidate's token (or token 0, as configured)
        # and the one-mask answer's (always token 0)
        best = torch.argmax(iou, dim=-1)
        multi_token = (
            tokens[:, 1:][torch.arange(1), best] if dec.use_multimask_token_for_obj_ptr else tokens[:, 0]
        )
        ptrs = model.obj_ptr_proj(torch.stack([multi_token, tokens[:, 0]], dim=1))
        ptrs = trk._with_presence(model, ptrs, (obj_logits > 0)[:, None])
        return iou, masks, full, obj_logits, single, single_iou, ptrs


class OnnxMemoryEncoder(nn.Module):
    """A frame's features and its mask (low-res logits) -> the memory features tracking stores."""

    def __init__(self, model: SAM2Model) -> None:
        super().__init__()
        self.model = model

    def forward(self, vision_feats, low_res_mask, object_score_logits, is_mask_from_points):
        s = self.model.image_size
        high = F.interpolate(low_res_mask, size=(s, s), mode="bilinear", align_corners=False)
        binary = trk.memory_mask(self.model, high, True)
        soft = trk.memory_mask(self.model, high, False)
        mask = torch.where(is_mask_from_points.reshape(1, 1, 1, 1) > 0.5, binary, soft)
        return trk.encode_memory_mask(self.model, vision_feats, mask, object_score_logits)[0]


class OnnxMemoryAttention(nn.Module):
    """Memory attention over a fixed-size bank (:func:`samkit.video.tracking.assemble_memory_static`'s
    layout, built from the bank's tensors inside the graph)."""

    def __init__(self, model: SAM2Model, curr_pos: torch.Tensor, pos_enc: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        # constant sine encodings: the frame's (1, hw, C) and the memory's (hw, mem_dim)
        self.register_buffer("curr_pos", curr_pos)
        self.register_buffer("pos_enc", pos_enc)

    def forward(
        self, vision_feats, memory_feats, memory_tpos, memory_valid, obj_ptrs, obj_ptr_pos, obj_ptr_valid
    ):
        model, cfg = self.model, self.model.cfg
        mem_dim = model.mem_dim
        b, k = memory_feats.shape[:2]
        hw = memory_feats.shape[-2] * memory_feats.shape[-1]
        mem = memory_feats.flatten(3).transpose(2, 3)  # (1, K, hw, mem_dim)
        tpos = model.maskmem_tpos_enc.reshape(cfg.num_maskmem, mem_dim)[cfg.num_maskmem - 1 - memory_tpos]
        pos = self.pos_enc + tpos[:, :, None, :]  # (1, K, hw, mem_dim)
        valid = (memory_valid > 0.5)[:, :, None].expand(b, k, hw)
        mems, poss, valids = [mem.flatten(1, 2)], [pos.flatten(1, 2)], [valid.flatten(1, 2)]
        n_ptr = 0
        if cfg.use_obj_ptrs_in_encoder and obj_ptrs.shape[1] > 0:
            ptrs, obj_pos = trk.pointer_tokens(model, obj_ptrs, obj_ptr_pos)
            per = ptrs.shape[1] // obj_ptrs.shape[1]  # tokens per pointer
            mems.append(ptrs)
            poss.append(obj_pos)
            valids.append((obj_ptr_valid > 0.5).repeat_interleave(per, dim=1))
            n_ptr = ptrs.shape[1]
        top = vision_feats
        out = model.memory_attention(
            top.flatten(2).transpose(1, 2),
            self.curr_pos.expand(b, -1, -1),
            torch.cat(mems, dim=1),
            torch.cat(poss, dim=1),
            num_obj_ptr_tokens=n_ptr,
            memory_mask=torch.cat(valids, dim=1),
        )
        return out.transpose(1, 2).reshape(top.shape)


def _check_model(model: SAM2Model) -> None:
    if not isinstance(model, SAM2Model):
        raise ExportError(f"export needs a samkit SAM2Model (samkit.load_model), got {type(model).__name__}")
    if model.precision != "fp32":
        raise ExportError("export an fp32 model (load it without --fast): the graphs are float32")
    if not model.cfg.use_high_res_features_in_sam:
        raise ExportError(f"{model.cfg.name} has no high-resolution features: not the SAM 2 layout")
    if not model.cfg.directly_add_no_mem_embed or model.cfg.num_maskmem == 0:
        raise ExportError(f"{model.cfg.name} has no memory or adds it differently: not the SAM 2 layout")


def require_onnx() -> None:
    """Raise :class:`ExportError` unless the ``onnx`` package (the exporter's) is installed."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'samkit[onnx]'") from None


def export_onnx(
    model: SAM2Model,
    out_dir: str | os.PathLike,
    opset: int = 18,
    cond_frames: int = 2,
    graphs: tuple[str, ...] = GRAPHS,
) -> dict:
    """Write ``encoder.onnx``, ``decoder.onnx``, ``memory_encoder.onnx``, ``memory_attention.onnx`` and
    ``samkit-onnx.json`` (model, sizes, normalisation, names, the memory bank's layout) into
    ``out_dir``; returns the JSON's content. ``graphs``: only these of the four (the server's
    client-side decoding exports the decoder alone). ``cond_frames``: the memory bank's slots for prompted
    frames (a tracker attends to at most this many, the closest in time). Needs ``onnx`` (``pip
    install 'samkit[onnx]'``)."""
    _check_model(model)
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise ExportError(f"opset {opset} is not supported: use {MIN_OPSET} or newer (default 18)")
    if not isinstance(cond_frames, int) or not 2 <= cond_frames <= 16:
        raise ExportError(f"cond_frames must be 2 to 16, got {cond_frames!r}")
    unknown = [g for g in graphs if g not in GRAPHS]
    if unknown or not graphs:
        raise ExportError(f"graphs: {unknown or 'none'}; choose among {', '.join(GRAPHS)}")
    require_onnx()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = model.cfg
    was_training = model.training
    model = model.eval()
    dev = model.device
    s = model.image_size
    g = torch.Generator().manual_seed(0)  # example inputs (not the global RNG)
    image = torch.randn(1, 3, s, s, generator=g).to(dev)
    with torch.no_grad():
        if "encoder" in graphs:
            embed, hr0, hr1, top = OnnxEncoder(model)(image)
        else:  # the other graphs only need example values of the encoder's shapes (no encoder run)
            shapes = encoder_shapes(model)
            embed, hr0, hr1, top = (torch.randn(*shapes[n], generator=g).to(dev) for n in ENCODER_OUTPUTS)
        top_pos = model.image_encoder.neck.position_encoding(top)  # the frame's sine encoding
        low = torch.randn(1, 1, s // 4, s // 4, generator=g).to(dev)
        score = torch.ones(1, 1, device=dev)
        _, mem_pos = trk.encode_memory(model, top, F.interpolate(low, size=(s, s)), score, True)
    # decoder example: two clicks
    coords = torch.tensor([[[s * 0.4, s * 0.5], [s * 0.6, s * 0.4]]], device=dev)
    labels = torch.tensor([[1.0, 0.0]], device=dev)
    mask_input = torch.zeros(1, 1, s // 4, s // 4, device=dev)
    has_mask = torch.zeros(1, device=dev)
    orig = torch.tensor([s * 0.75, float(s)], device=dev)
    # memory examples: the bank full, its slot layout that of assemble_memory_static
    k, p = memory_slots(model, cond_frames)
    h, w = top.shape[-2:]
    bank = (
        top,
        torch.randn(1, k, model.mem_dim, h, w, generator=g).to(dev),
        torch.tensor([[0] * cond_frames + list(range(1, k - cond_frames + 1))], device=dev),
        torch.ones(1, k, device=dev),
        torch.randn(1, p, model.hidden_dim, generator=g).to(dev),
        torch.linspace(0, 1, p, device=dev)[None],
        torch.ones(1, p, device=dev),
    )
    curr_pos = top_pos.flatten(2).transpose(1, 2)
    pos_enc = mem_pos[0].flatten(1).t().contiguous()
    # plain kernels: the CPU's tiled upscaling and banded upsampling are for eager speed only; the
    # rotary encoding in real arithmetic (ONNX has no complex numbers)
    plain = dict(
        upscale="untiled", upsample="interpolate", attention="fused", fused_linear=False, rope="real"
    )
    # with gradients on, the mask decoder takes its plain (training) expression: the inference path
    # writes masks into preallocated buffers, which a trace does not follow
    params = [p for p in model.parameters()]
    grads = [p.requires_grad for p in params]
    for q in params:
        q.requires_grad_(True)
    try:
        todo = [
            ("encoder", OnnxEncoder(model), (image,), ["image"], ENCODER_OUTPUTS, None),
            (
                "decoder",
                OnnxDecoder(model),
                (embed, hr0, hr1, coords, labels, mask_input, has_mask, orig),
                DECODER_INPUTS,
                DECODER_OUTPUTS,
                {
                    "point_coords": {1: "num_points"},
                    "point_labels": {1: "num_points"},
                    "masks": {2: "height", 3: "width"},
                },
            ),
            (
                "memory_encoder",
                OnnxMemoryEncoder(model),
                (top, low, score, torch.ones(1, device=dev)),
                MEMORY_ENCODER_INPUTS,
                ["maskmem_features"],
                None,
            ),
            (
                "memory_attention",
                OnnxMemoryAttention(model, curr_pos, pos_enc),
                bank,
                MEMORY_ATTENTION_INPUTS,
                ["pix_feat"],
                None,
            ),
        ]
        with override(**plain), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes about Python values
            for name, module, args, inputs, outputs, dynamic in todo:
                if name not in graphs:
                    continue
                # (wrappers in eval mode: the exporter restores a module's mode afterwards, and a new
                # module's is training, which would switch the model into training mode)
                torch.onnx.export(
                    module.eval(),
                    args,
                    str(out / f"{name}.onnx"),
                    input_names=inputs,
                    output_names=outputs,
                    dynamic_axes=dynamic,
                    opset_version=opset,
                    dynamo=False,
                )
                _share_constants(out / f"{name}.onnx")
    finally:
        for q, g_ in zip(params, grads):
            q.requires_grad_(g_)
        model.train(was_training)
    info = {
        "model": cfg.name,
        "image_size": s,
        "mean": [255 * m for m in IMAGENET_MEAN],
        "std": [255 * v for v in IMAGENET_STD],
        "opset": opset,
        "encoder": {"file": "encoder.onnx", "inputs": ["image"], "outputs": ENCODER_OUTPUTS},
        "decoder": {"file": "decoder.onnx", "inputs": DECODER_INPUTS, "outputs": DECODER_OUTPUTS},
        "memory_encoder": {
            "file": "memory_encoder.onnx",
            "inputs": MEMORY_ENCODER_INPUTS,
            "outputs": ["maskmem_features"],
        },
        "memory_attention": {
            "file": "memory_attention.onnx",
            "inputs": MEMORY_ATTENTION_INPUTS,
            "outputs": ["pix_feat"],
        },
        # the memory bank's layout, and the configuration fields video tracking reads
        "memory": {"cond_frames": cond_frames, "frame_slots": k, "pointer_slots": p},
        "tracking": {f: getattr(cfg, f) for f in TRACKING_FIELDS},
        "notes": "image: RGB resized to image_size x image_size, (x - mean) / std, NCHW float32; "
        "point_coords in pixels of that square (a box: two points labelled 2 and 3); the decoder adds "
        "SAM 2's padding point itself",
    }
    for g in GRAPHS:
        if g not in graphs:
            del info[g]  # (what was not written is not listed)
    (out / "samkit-onnx.json").write_text(json.dumps(info, indent=2))
    return info


def encoder_shapes(model: SAM2Model) -> dict[str, list[int]]:
    """The shapes of encoder.onnx's outputs, by name."""
    s, c = model.image_size, model.hidden_dim
    embed = [1, c, s // 16, s // 16]
    return {
        "image_embed": embed,
        "high_res_feats_0": [1, c // 8, s // 4, s // 4],
        "high_res_feats_1": [1, c // 4, s // 8, s // 8],
        "vision_feats": embed,
    }


def memory_slots(model: SAM2Model, cond_frames: int) -> tuple[int, int]:
    """The exported memory bank's size: (frame slots K, pointer slots P) with ``cond_frames`` slots
    for prompted frames (:func:`samkit.video.tracking.bank_size`)."""
    cond, recent, pointers = trk.bank_size(model, cond_frames)
    return cond + recent, pointers


VARIANTS = ("fp16", "int8", "int8-dynamic")
GRAPH_FILES = tuple(f"{g}.onnx" for g in GRAPHS)


def export_variant(out_dir: str | os.PathLike, variant: str) -> Path:
    """Write a smaller copy of an export in ``out_dir/<variant>/`` (the same file names, so clients
    and :class:`~samkit.export.OnnxVideoTracker` load the folder as they load the original):

    - ``fp16``: the weights stored as float16 (half the download), each cast back to float32 where the
      graph reads it, so the arithmetic stays float32 and runs on every onnxruntime backend;
    - ``int8``: the weights stored as int8 with a float32 scale per output channel (a quarter of the
      download), dequantised where the graph reads them (``DequantizeLinear``): float32 arithmetic;
    - ``int8-dynamic``: onnxruntime's dynamic quantisation (``quantize_dynamic``): the matrix products'
      weights in int8 and their activations quantised per call (int8 arithmetic: faster on CPUs,
      less exact).

    Returns the folder."""
    if variant not in VARIANTS:
        raise ExportError(f"unknown variant {variant!r}: use one of {', '.join(VARIANTS)}")
    require_onnx()
    src = Path(out_dir)
    info_path = src / "samkit-onnx.json"
    if not info_path.is_file() or any(not (src / f).is_file() for f in GRAPH_FILES):
        raise ExportError(f"{src} holds no complete samkit ONNX export: export it first")
    dst = src / variant
    dst.mkdir(exist_ok=True)
    for name in GRAPH_FILES:
        if variant == "fp16":
            _fp16_weights(src / name, dst / name)
        elif variant == "int8":
            _int8_weights(src / name, dst / name)
        else:
            try:
                from onnxruntime.quantization import QuantType, quantize_dynamic
            except ImportError:
                raise ExportError("int8 quantisation needs onnxruntime: pip install 'samkit[onnx]'") from None
            import logging

            quant_log = logging.getLogger()  # quantize_dynamic warns through the root logger
            level = quant_log.level
            quant_log.setLevel(logging.ERROR)
            try:
                quantize_dynamic(src / name, dst / name, weight_type=QuantType.QInt8)
            finally:
                quant_log.setLevel(level)
    info = json.loads(info_path.read_text())
    info["variant"] = variant
    (dst / "samkit-onnx.json").write_text(json.dumps(info, indent=2))
    return dst


def _int8_weights(src: Path, dst: Path, min_size: int = 1024) -> None:
    """Store the weight tensors (2-D or more, at least ``min_size`` values) as int8 with a float32
    scale per output channel (symmetric, so a zero stays zero), each followed by a DequantizeLinear
    back to float32 under its old name."""
    from onnx import TensorProto, helper, numpy_helper

    def convert_for(graph):
        # weights only (what a MatMul, Gemm or convolution multiplies by; not the constant tables,
        # such as the rotary encoding's, which other nodes read), with a scale per output channel:
        # the last axis of a MatMul's right operand, the first of a Conv's or Gemm's weight
        axis_of = {}
        for node in graph.node:
            if node.op_type == "MatMul" and len(node.input) > 1:
                axis_of[node.input[1]] = -1
            elif node.op_type in ("Conv", "ConvTranspose", "Gemm") and len(node.input) > 1:
                axis_of[node.input[1]] = 0

        def int8(init):
            if (
                init.name not in axis_of
                or init.data_type != TensorProto.FLOAT
                or len(init.dims) < 2
                or int(np.prod(init.dims)) < min_size
            ):
                return None
            w = numpy_helper.to_array(init)
            axis = axis_of[init.name] % w.ndim
            peak = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1)
            scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
            shape = [1] * w.ndim
            shape[axis] = -1
            q = np.clip(np.round(w / scale.reshape(shape)), -127, 127).astype(np.int8)
            stored = [
                numpy_helper.from_array(q, init.name + "_int8"),
                numpy_helper.from_array(scale, init.name + "_scale"),
            ]
            node = helper.make_node(
                "DequantizeLinear", [init.name + "_int8", init.name + "_scale"], [init.name], axis=axis
            )
            return stored, node

        return int8

    _rewrite_initializers(src, dst, convert_for)


def _fp16_weights(src: Path, dst: Path, min_size: int = 16) -> None:
    """Store the float32 initializers of at least ``min_size`` values as float16, each followed by a
    Cast back to float32 under its old name (so every node reads what it read before, rounded)."""
    from onnx import TensorProto, helper, numpy_helper

    def fp16(init):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < min_size:
            return None
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name + "_fp16")
        return [half], helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT)

    _rewrite_initializers(src, dst, lambda graph: fp16)


def _rewrite_initializers(src: Path, dst: Path, convert_for) -> None:
    """Copy the graph ``src`` to ``dst`` with each initializer for which ``convert(init)``
    (``convert = convert_for(graph)``) gives (stored initializers, node) replaced by those: the node,
    placed first, recomputes the initializer's name from what is stored, so the rest of the graph is
    unchanged."""
    import onnx

    model = onnx.load(str(src))
    graph = model.graph
    convert = convert_for(graph)
    nodes, keep = [], []
    for init in graph.initializer:
        converted = convert(init)
        if converted is None:
            keep.append(init)
        else:
            keep += converted[0]
            nodes.append(converted[1])
    del graph.initializer[:]
    graph.initializer.extend(keep)
    nodes += list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(dst))


def _share_constants(path: Path, min_size: int = 1024) -> None:
    """Keep one copy of each large constant: the tracer writes a tensor captured from Python (the rotary
    encoding's cos/sin tables) as a new constant at every use, which made memory_attention.onnx 156 MiB
    for a 24 MiB module. Constant nodes and initializers of at least ``min_size`` values with the same
    bytes become one initializer that every former user reads."""
    import hashlib

    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    shared: dict[tuple, str] = {}  # (dtype, dims, sha256) -> initializer name
    rename: dict[str, str] = {}
    inits = []

    def key(t) -> tuple:
        raw = numpy_helper.to_array(t).tobytes()
        return (t.data_type, tuple(t.dims), hashlib.sha256(raw).hexdigest())

    for init in graph.initializer:
        if int(np.prod(init.dims)) >= min_size:
            k = key(init)
            if k in shared:
                rename[init.name] = shared[k]
                continue
            shared[k] = init.name
        inits.append(init)
    nodes = []
    for node in graph.node:
        value = (
            next((a.t for a in node.attribute if a.name == "value"), None)
            if node.op_type == "Constant"
            else None
        )
        if value is not None and int(np.prod(value.dims)) >= min_size:
            k = key(value)
            if k not in shared:
                value.name = node.output[0]
                inits.append(value)
                shared[k] = node.output[0]
            else:
                rename[node.output[0]] = shared[k]
            continue
        nodes.append(node)
    if not rename and len(nodes) == len(graph.node):
        return
    graph_outputs = {o.name for o in graph.output}
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    assert not graph_outputs & set(rename)  # (a graph output is never a constant here)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(path))
