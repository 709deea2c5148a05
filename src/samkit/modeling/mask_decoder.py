"""Mask decoder: output tokens + prompt tokens run through the two-way transformer against the image
embedding; each mask token becomes a dynamic 1x1 filter over the upscaled image features."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..kernels import upscale as upscale_kernels
from ..policy import current
from .common import MLP, LayerNorm2d, stability_score
from .transformer import TwoWayTransformer


@dataclass
class DecoderInputs:
    """The image side of one decoder call: src (1 or B, C, h, w) = image embedding + dense prompt,
    its positional encoding (1, C, h, w), the first layer's shared projections when src is one image
    for all prompts, and the upscaling's skip inputs."""

    src: torch.Tensor
    image_pe: torch.Tensor
    shared: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    skips: tuple[torch.Tensor, torch.Tensor] | None = None  # prepare_skips of the high-res features


class MaskDecoder(nn.Module):
    def __init__(
        self,
        transformer_dim: int,
        transformer: TwoWayTransformer,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        use_high_res_features: bool = True,
        iou_prediction_use_sigmoid: bool = True,
        dynamic_multimask_via_stability: bool = True,
        dynamic_multimask_stability_delta: float = 0.05,
        dynamic_multimask_stability_thresh: float = 0.98,
        pred_obj_scores: bool = True,
        pred_obj_scores_mlp: bool = True,
        use_multimask_token_for_obj_ptr: bool = True,
    ) -> None:
        super().__init__()
        c = transformer_dim
        self.transformer_dim = c
        self.transformer = transformer
        self.num_mask_tokens = num_multimask_outputs + 1
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, c)
        self.pred_obj_scores = pred_obj_scores
        if pred_obj_scores:
            self.obj_score_token = nn.Embedding(1, c)
        self.use_multimask_token_for_obj_ptr = use_multimask_token_for_obj_ptr
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, kernel_size=2, stride=2),
            LayerNorm2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.use_high_res_features = use_high_res_features
        if use_high_res_features:
            self.conv_s0 = nn.Conv2d(c, c // 8, kernel_size=1)
            self.conv_s1 = nn.Conv2d(c, c // 4, kernel_size=1)
        self.output_hypernetworks_mlps = nn.ModuleList(
            MLP(c, c, c // 8, 3) for _ in range(self.num_mask_tokens)
        )
        self.iou_prediction_head = MLP(
            c,
            iou_head_hidden_dim,
            self.num_mask_tokens,
            iou_head_depth,
            sigmoid_output=iou_prediction_use_sigmoid,
        )
        if pred_obj_scores:
            self.pred_obj_score_head = MLP(c, c, 1, 3) if pred_obj_scores_mlp else nn.Linear(c, 1)
        self.dynamic_multimask_via_stability = dynamic_multimask_via_stability
        self.dynamic_multimask_stability_delta = dynamic_multimask_stability_delta
        self.dynamic_multimask_stability_thresh = dynamic_multimask_stability_thresh

    def image_side_modules(self) -> list[nn.Module]:
        """The layers that only ever see image tokens (4096 per prompt): what a fast decoder runs in
        bfloat16. Everything else works on the few output and prompt tokens, or on products of them
        with the image that the attention code casts to the image's dtype."""
        norms = [layer.norm4 for layer in self.transformer.layers]
        return [self.output_upscaling, *norms]

    @property
    def image_dtype(self) -> torch.dtype:
        """The dtype the image side (embedding, positions, high-res features) must come in."""
        return self.output_upscaling[0].weight.dtype

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
        prepared: DecoderInputs | None = None,
        min_iou: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict masks for B prompts.

        image_embeddings: (B or 1, C, h, w) (1 with ``repeat_image``); image_pe: (1, C, h, w);
        sparse: (B, N, C); dense: (B, C, h, w); high_res_features: [(., C/8, 4h, 4w), (., C/4, 2h, 2w)].

        Returns masks (B, M, 4h, 4w) logits, iou_pred (B, M), sam_tokens (B, M' , C) for the object
        pointer, object_score_logits (B, 1); M = 3 with ``multimask_output`` else 1.
        ``prepared``: :meth:`prepare_image` of this image and dense embedding, reused across calls
        (image_embeddings and dense_prompt_embeddings are then not used). ``min_iou`` (with
        ``multimask_output``): a prompt none of whose masks has a predicted IoU above it is not
        upscaled -- its masks are -inf (empty) -- since a caller filtering on the scores drops them.
        """
        # with several masks per prompt the first token's mask is never returned: don't compute it
        first = 1 if multimask_output else 0
        masks, iou_pred, mask_tokens_out, obj_logits = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            repeat_image,
            high_res_features,
            first_mask=first,
            prepared=prepared,
            min_iou=min_iou if multimask_output else None,
        )
        if multimask_output:
            iou_pred = iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not self.training:
            masks, iou_pred = self._dynamic_multimask_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[:, 0:1], iou_pred[:, 0:1]
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens = mask_tokens_out[:, 1:]
        else:
            # the single-mask token is what tracking was trained with as the object pointer
            sam_tokens = mask_tokens_out[:, 0:1]
        return masks, iou_pred, sam_tokens, obj_logits

    def predict_masks(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
        first_mask: int = 0,
        prepared: DecoderInputs | None = None,
        min_iou: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Masks of tokens ``first_mask``.. (B, 4 - first_mask, 4h, 4w), and for all four tokens
        iou_pred (B, 4), mask tokens (B, 4, C), object score logits (B, 1). ``min_iou``: prompts
        whose masks (from ``first_mask`` on) all score at most this get -inf masks, not upscaled."""
        prep = prepared or self.prepare(image_embeddings, dense_prompt_embeddings, repeat_image, image_pe)
        if torch.is_grad_enabled() and (
            prep.src.requires_grad or any(p.requires_grad for p in self.parameters())
        ):
            # training: the plain expression, differentiable and per prompt (each object of a training
            # batch may come from another image); the buffers and tiles below are for inference
            hs, src = self.run_transformer(prep, sparse_prompt_embeddings)
            iou_pred, mask_tokens_out, obj_logits, hyper_in = self.heads(hs, first_mask)
            h, w = prep.src.shape[-2:]
            if self.use_high_res_features:
                masks = upscale_kernels.upscale_plain(
                    self.output_upscaling, src, hyper_in, (h, w), high_res_features
                )
            else:
                up = self.output_upscaling(src.transpose(1, 2).reshape(src.shape[0], -1, h, w))
                masks = (hyper_in @ up.flatten(2)).view(src.shape[0], -1, 4 * h, 4 * w)
            return masks, iou_pred, mask_tokens_out, obj_logits
        skips = prep.skips
        if skips is None and self.use_high_res_features:
            skips = self.prepare_skips(high_res_features)
        b = sparse_prompt_embeddings.shape[0]
        h, w = prep.src.shape[-2:]
        if b == 0:
            c, n = self.transformer_dim, self.num_mask_tokens
            e = prep.src.new_empty
            return e(0, n - first_mask, 4 * h, 4 * w), e(0, n), e(0, n, c), e(0, 1)
        masks = None
        outs = []
        # prompts that go through together (the policy: cache-sized groups on the CPU, whole batches
        # where every operation is a kernel launch)
        policy = current(prep.src.device)
        group = policy.prompt_group_bf16 if prep.src.dtype == torch.bfloat16 else policy.prompt_group
        for s in range(0, b, group):
            hs, src = self.run_transformer(prep, sparse_prompt_embeddings[s : s + group], s)
            iou_pred, mask_tokens_out, obj_logits, hyper_in = self.heads(hs, first_mask)
            if masks is None:
                masks = src.new_empty(b, hyper_in.shape[1], 4 * h, 4 * w)
            out = masks[s : s + len(hs)]
            keep = None if min_iou is None else (iou_pred[:, first_mask:] > min_iou).any(1)
            if keep is None or bool(keep.all()):
                self.mask_logits(src, hyper_in, (h, w), out=out, skips=skips)
            else:
                # upscaling is ~half of a prompt's decoder work: skip it for prompts already dropped
                out.fill_(float("-inf"))
                if bool(keep.any()):
                    out[keep] = self.mask_logits(src[keep], hyper_in[keep], (h, w), skips=skips)
            outs.append((iou_pred, mask_tokens_out, obj_logits))
        iou_pred, mask_tokens_out, obj_logits = (torch.cat(x) for x in zip(*outs))
        return masks, iou_pred, mask_tokens_out, obj_logits

    def prepare(
        self,
        image_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        repeat_image: bool,
        image_pe: torch.Tensor,
    ) -> DecoderInputs:
        """The image side of a decoder call, prepared once for all its prompts."""
        dense = dense_prompt_embeddings
        shared = repeat_image and (dense.shape[0] == 1 or dense.stride(0) == 0)
        if shared:
            # one image and one dense embedding (no mask prompt) for every prompt: keep batch 1 and
            # let the transformer broadcast it, instead of copying the image B times; its first
            # layer's projections are computed here once
            return self.prepare_image(image_embeddings, dense[:1], image_pe)
        if repeat_image:
            src = image_embeddings + dense  # (1, C, h, w) + (B, C, h, w)
        else:
            if image_embeddings.shape[0] != dense.shape[0]:
                raise ValueError(f"{image_embeddings.shape[0]} image embeddings for {dense.shape[0]} prompts")
            src = image_embeddings + dense
        return DecoderInputs(src, image_pe, None)

    def prepare_image(
        self,
        image_embedding: torch.Tensor,
        dense_prompt_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> DecoderInputs:
        """The image side of every decoder call on one image (1, C, h, w) with one dense embedding
        (1, C, h, w) -- the no-mask embedding of point and box prompts --, first layer projections
        and (given the high-res features) upscaling skips included, to pass as ``prepared`` to any
        number of calls: a click then skips the image work it would otherwise redo."""
        src = image_embedding + dense_prompt_embedding
        with_skips = self.use_high_res_features and high_res_features is not None
        skips = self.prepare_skips(high_res_features) if with_skips else None
        return DecoderInputs(src, image_pe, self.transformer.share_image(src, image_pe), skips)

    def prepare_skips(self, high_res_features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The high-res features (1, C/8, 4h, 4w) and (1, C/4, 2h, 2w), rearranged for the token-order
        upscaling with the transposed convolutions' biases folded in.

        s1: rows = grid cells (i, j), columns (a, c, channel) for pixel (2i + a, 2j + c); s0: rows =
        2h x 2w pixels in image order, columns (e, f, channel) for pixel (2p + e, 2q + f).
        """
        if high_res_features is None:
            raise ValueError("this mask decoder needs the high-resolution features")
        return upscale_kernels.prepare_skips(self.output_upscaling, high_res_features)

    def run_transformer(
        self, prep: DecoderInputs, sparse_prompt_embeddings: torch.Tensor, start: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Output tokens + prompt tokens against the image, for prompts ``start``.. of the prepared
        call: output tokens (B, 5 or 6, C), image tokens (B, h*w, C)."""
        heads = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            heads.insert(0, self.obj_score_token.weight)
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat(heads, dim=0).unsqueeze(0).expand(b, -1, -1)
        # the tokens run in the dtype of the token-side weights (float32 in the fast decoder too)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings.to(output_tokens.dtype)), dim=1)
        src = prep.src if prep.src.shape[0] == 1 else prep.src[start : start + b]
        # the prompt tokens' own outputs are never read: only the output tokens come back
        hs, keys = self.transformer(src, prep.image_pe, tokens, prep.shared, n_out=output_tokens.shape[1])
        return hs, keys.expand(b, -1, -1)

    def heads(
        self, hs: torch.Tensor, first_mask: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """From the transformer's tokens (B, T, C): iou_pred (B, 4), mask tokens (B, 4, C), object score
        logits (B, 1) and the hypernetwork filters (B, 4 - first_mask, C/8) of mask tokens
        ``first_mask``.. that turn image features into masks (the others' masks are not computed)."""
        s = 1 if self.pred_obj_scores else 0
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1 : s + 1 + self.num_mask_tokens, :]
        mlps = self.output_hypernetworks_mlps
        hyper_in = torch.stack(
            [mlps[i](mask_tokens_out[:, i, :]) for i in range(first_mask, self.num_mask_tokens)], dim=1
        )
        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            obj_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            obj_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)  # "object present"
        return iou_pred, mask_tokens_out, obj_logits, hyper_in

    def mask_logits(
        self,
        src: torch.Tensor,
        hyper_in: torch.Tensor,
        hw: tuple[int, int],
        high_res_features: list[torch.Tensor] | None = None,
        out: torch.Tensor | None = None,
        skips: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Upscale the transformer's image tokens src (B, h*w, C) and apply the filters hyper_in
        (B, M, C/8): mask logits (B, M, 4h, 4w), written into ``out`` when given. The high-res
        features come as feature maps or already as :meth:`prepare_skips`."""
        b, m = hyper_in.shape[:2]
        h, w = hw
        if out is None:
            out = src.new_empty(b, m, 4 * h, 4 * w)
        if not self.use_high_res_features:
            up = self.output_upscaling(src.transpose(1, 2).reshape(b, -1, h, w))
            torch.matmul(hyper_in, up.flatten(2), out=out.view(b, m, -1))
            return out
        if skips is None:
            skips = self.prepare_skips(high_res_features)
        if current(src.device).upscale == "tiled":
            upscale = upscale_kernels.upscale_tiled
        else:
            upscale = upscale_kernels.upscale_untiled
        return upscale(self.output_upscaling, src, hyper_in, (h, w), skips, out)

    def _dynamic_multimask_via_stability(
        self, all_masks: torch.Tensor, all_ious: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Single-mask output, but fall back to the best multimask candidate when token 0's mask is
        unstable (stability below the threshold)."""
        multi_masks, multi_ious = all_masks[:, 1:], all_ious[:, 1:]
        best = torch.argmax(multi_ious, dim=-1)
        rows = torch.arange(multi_ious.shape[0], device=all_ious.device)
        best_masks = multi_masks[rows, best].unsqueeze(1)
        best_ious = multi_ious[rows, best].unsqueeze(1)
        single_masks, single_ious = all_masks[:, 0:1], all_ious[:, 0:1]
        stable = (
            stability_score(single_masks, 0.0, self.dynamic_multimask_stability_delta)
            >= self.dynamic_multimask_stability_thresh
        )
        masks = torch.where(stable[..., None, None], single_masks, best_masks)
        ious = torch.where(stable, single_ious, best_ious)
        return masks, ious
