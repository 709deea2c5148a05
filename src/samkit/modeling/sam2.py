"""The SAM 2 network: image encoder, SAM prompt encoder and mask decoder, memory attention, memory
encoder and the object-pointer parameters. Parameter names equal the official checkpoints' keys.

Inference logic lives elsewhere: the image predictor uses :meth:`SAM2Model.encode_image` and the
heads; video tracking composes the memory parts as small functions in ``samkit.video.tracking``.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

from ..configs import ModelConfig
from ..policy import Policy, decide
from .common import MLP, pointwise_conv
from .image_encoder import BackboneOutput, ImageEncoder
from .mask_decoder import MaskDecoder
from .memory_attention import MemoryAttention
from .memory_encoder import MemoryEncoder
from .prompt_encoder import PromptEncoder
from .transformer import TwoWayTransformer


class SAM2Model(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # how this model runs (samkit.policy): set by load_model, re-decided if the model moves
        self._policy_settings = {"compile": False, "cuda_graphs": True}
        self._precision: str | None = None
        self._policy: Policy | None = None
        c, mem = cfg.d_model, cfg.mem_dim
        self.hidden_dim, self.mem_dim = c, mem
        self.image_size = cfg.image_size

        self.image_encoder = ImageEncoder(cfg)
        self.memory_attention = MemoryAttention(
            c, mem, cfg.mem_attn_layers, cfg.mem_attn_ffn_dim, cfg.mem_attn_heads, cfg.rope_theta
        )
        self.memory_encoder = MemoryEncoder(
            c,
            mem,
            cfg.mem_fuser_layers,
            cfg.mem_fuser_kernel_size,
            cfg.mask_downsampler_kernel,
            cfg.mask_downsampler_stride,
            cfg.mask_downsampler_padding,
            cfg.mask_downsampler_total_stride,
        )
        s = cfg.embedding_size
        self.sam_prompt_encoder = PromptEncoder(
            c, (s, s), (cfg.image_size, cfg.image_size), cfg.mask_in_chans
        )
        self.sam_mask_decoder = MaskDecoder(
            transformer_dim=c,
            transformer=TwoWayTransformer(cfg.decoder_depth, c, cfg.decoder_heads, cfg.decoder_mlp_dim),
            num_multimask_outputs=cfg.num_multimask_outputs,
            iou_head_hidden_dim=cfg.iou_head_hidden_dim,
            use_high_res_features=cfg.use_high_res_features_in_sam,
            iou_prediction_use_sigmoid=cfg.iou_prediction_use_sigmoid,
            dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
            pred_obj_scores=cfg.pred_obj_scores,
            pred_obj_scores_mlp=cfg.pred_obj_scores_mlp,
            use_multimask_token_for_obj_ptr=cfg.use_multimask_token_for_obj_ptr,
        )

        # memory-bank parameters
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, mem))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, c))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, c))
        if cfg.use_obj_ptrs_in_encoder:
            # turns a full-resolution mask prompt into a stride-4 logit map for the decoder
            self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
            self.obj_ptr_proj = MLP(c, c, c, 3) if cfg.use_mlp_for_obj_ptr_proj else nn.Linear(c, c)
        else:
            self.obj_ptr_proj = nn.Identity()
        if cfg.pred_obj_scores and cfg.use_obj_ptrs_in_encoder:
            self.no_obj_ptr = nn.Parameter(torch.zeros(1, c))
        if cfg.proj_tpos_enc_in_obj_ptrs:
            self.obj_ptr_tpos_proj = nn.Linear(c, mem)
        else:
            self.obj_ptr_tpos_proj = nn.Identity()
        self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem)) if cfg.no_obj_embed_spatial else None
        self._init_embeddings()

    def _init_embeddings(self) -> None:
        for p in (
            self.maskmem_tpos_enc,
            self.no_mem_embed,
            self.no_mem_pos_enc,
            getattr(self, "no_obj_ptr", None),
            self.no_obj_embed_spatial,
        ):
            if p is not None:
                nn.init.trunc_normal_(p, std=0.02)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the heads (float32 also when the image encoder runs in bfloat16)."""
        return self.sam_mask_decoder.iou_token.weight.dtype

    @property
    def precision(self) -> str:
        """``fp32`` (exact) or ``bf16`` (the fast path), as ``load_model`` / ``apply_precision`` set it.
        The policy decides what runs in bf16 (``policy.encoder`` for the image encoder)."""
        if self._precision is None:  # built directly: the encoder's dtype says
            bf16 = self.image_encoder.trunk.patch_embed.proj.weight.dtype == torch.bfloat16
            return "bf16" if bf16 else "fp32"
        return self._precision

    @property
    def policy(self) -> Policy:
        """How this model runs (:class:`samkit.policy.Policy`): decided by :func:`samkit.load_model`
        from the device, the CPU and its settings, and decided again with the same settings when the
        model has moved to another device or changed precision."""
        p = self._policy
        if p is None or p.device != self.device.type or p.precision != self.precision:
            p = decide(self.device, self.precision, **self._policy_settings)
            self._policy = p
            if self._precision is not None:
                # the encoder's dtype follows the decision (moved to a device where bf16 pays, or not)
                want = torch.bfloat16 if p.encoder == "bf16" else torch.float32
                if self.image_encoder.trunk.patch_embed.proj.weight.dtype != want:
                    self.image_encoder.to(want)
        return p

    @policy.setter
    def policy(self, value: Policy) -> None:
        if not isinstance(value, Policy):
            raise TypeError(f"model.policy must be a samkit.policy.Policy, got {type(value).__name__}")
        if value.device != self.device.type or value.precision != self.precision:
            raise ValueError(
                f"a policy for {value.device}/{value.precision} does not fit this "
                f"{self.device.type}/{self.precision} model"
            )
        self._policy_settings = {"compile": value.compile, "cuda_graphs": value.cuda_graphs}
        self._policy = value

    def fast_mask_decoder(self, many_prompts: bool = False) -> MaskDecoder:
        """The mask decoder the fast path decodes with: :meth:`bf16_mask_decoder` where the policy
        says so (``click_decoder``, or with ``many_prompts`` -- the automatic mask generator's
        batches of 64 points -- ``amg_decoder``), else the model's own float32 decoder."""
        policy = self.policy
        pays = (policy.amg_decoder if many_prompts else policy.click_decoder) == "bf16"
        return self.bf16_mask_decoder() if pays else self.sam_mask_decoder

    def bf16_mask_decoder(self) -> MaskDecoder:
        """A copy of the mask decoder whose image side runs in bfloat16, made on first use and shared by
        every predictor and generator of this model. It is kept out of the module tree (not in
        ``state_dict``, not moved by ``.to``: a new copy is made when the model has moved). Weights
        loaded into the model later are not seen by an existing copy: call
        :meth:`drop_fast_mask_decoder` after changing them.

        Only the layers that see nothing but image tokens are cast (the upscaling and the image
        tokens' norms, see :meth:`MaskDecoder.image_side_modules`); the few output and prompt tokens
        stay float32: a bfloat16 matmul of a few rows has a fixed overhead on the CPU several times
        the float32 one's, and a click makes dozens of them."""
        dev = self.device
        cached = self.__dict__.get("_bf16_decoder")
        if cached is None or cached[0] != dev:
            dec = copy.deepcopy(self.sam_mask_decoder)
            for module in dec.image_side_modules():
                module.to(torch.bfloat16)
            # set through __dict__: as an attribute, nn.Module would register it as a submodule
            self.__dict__["_bf16_decoder"] = cached = (dev, dec)
        return cached[1]

    def drop_fast_mask_decoder(self) -> None:
        """Forget the copy of :meth:`bf16_mask_decoder` (the next call makes a new one)."""
        self.__dict__.pop("_bf16_decoder", None)

    def fast_autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for the fast path's tracking steps (memory attention): bfloat16 autocast on
        this model's device where the policy says so (``tracking_autocast``: a ``precision="bf16"``
        model on a CPU with fast bf16); elsewhere, and always for float32 models, a no-op, so the
        exact path keeps the reference's numbers. Autocast runs the matmuls and attention in bf16 and
        keeps layer norms and residual sums in float32; callers cast the result back with ``.float()``."""
        if not self.policy.tracking_autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=torch.bfloat16)

    # --- image path ---------------------------------------------------------------------------

    def forward_image(self, images: torch.Tensor) -> BackboneOutput:
        """Run the image encoder on (B, 3, S, S) normalized images.

        The two high-resolution levels are projected by the decoder's conv_s0/conv_s1 here, once
        per image, rather than on every click.
        """
        enc_dtype = self.image_encoder.trunk.patch_embed.proj.weight.dtype
        out = self.image_encoder(images.to(enc_dtype))
        high_res = self.cfg.use_high_res_features_in_sam
        if enc_dtype != torch.float32:
            # The fast path: project the two high-res levels in the encoder's dtype (256 -> 32 and 64
            # channels), then hand float32 features to the float32 heads, rather than casting the
            # 256-channel level-0 map first (a 64 MiB cast plus a layout copy per 1024 px image).
            if high_res:
                out.features[0] = pointwise_conv(self.sam_mask_decoder.conv_s0, out.features[0])
                out.features[1] = pointwise_conv(self.sam_mask_decoder.conv_s1, out.features[1])
            out.features = [f.float() for f in out.features]
            # float32 encodings straight from the (cached) table, not rounded through bfloat16
            out.pos = [self.image_encoder.neck.position_encoding(f) for f in out.features]
            return out
        if high_res:
            out.features[0] = self.sam_mask_decoder.conv_s0(out.features[0])
            out.features[1] = self.sam_mask_decoder.conv_s1(out.features[1])
        return out

    @property
    def encoder_batch(self) -> int:
        """Images the encoder runs at once (the policy's ``encoder_batch``)."""
        return self.policy.encoder_batch

    def encode_images(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`encode_image` over a batch in chunks of :attr:`encoder_batch`, concatenated."""
        n = self.encoder_batch
        if images.shape[0] <= n:
            return self.encode_image(images)
        parts = [self.encode_image(images[i : i + n]) for i in range(0, images.shape[0], n)]
        return torch.cat([p[0] for p in parts]), [torch.cat(lv) for lv in zip(*(p[1] for p in parts))]

    def encode_image(self, images: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Features for single-image segmentation.

        Returns image_embed (B, C, S/16, S/16), with the "no memory" embedding added as in video
        training, and high_res_feats [(B, C/8, S/4, S/4), (B, C/4, S/8, S/8)].
        """
        out = self.forward_image(images)
        embed = out.features[-1]
        if self.cfg.directly_add_no_mem_embed:
            embed = embed + self.no_mem_embed.reshape(1, -1, 1, 1)
        return embed, out.features[:-1]

    def forward(self, *args, **kwargs):  # pragma: no cover - guidance only
        raise NotImplementedError("use samkit.ImagePredictor / VideoPredictor / AutomaticMaskGenerator")
