"""Mask decoder: output tokens + prompt tokens run through the two-way transformer against the image
embedding; each mask token becomes a dynamic 1x1 filter over the upscaled image features."""

from __future__ import annotations

import torch
from torch import nn

from .common import MLP, LayerNorm2d, stability_score
from .transformer import TwoWayTransformer


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

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        sparse_prompt_embeddings: torch.Tensor,
        dense_prompt_embeddings: torch.Tensor,
        multimask_output: bool,
        repeat_image: bool,
        high_res_features: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict masks for B prompts.

        image_embeddings: (B or 1, C, h, w) (1 with ``repeat_image``); image_pe: (1, C, h, w);
        sparse: (B, N, C); dense: (B, C, h, w); high_res_features: [(., C/8, 4h, 4w), (., C/4, 2h, 2w)].

        Returns masks (B, M, 4h, 4w) logits, iou_pred (B, M), sam_tokens (B, M' , C) for the object
        pointer, object_score_logits (B, 1); M = 3 with ``multimask_output`` else 1.
        """
        masks, iou_pred, mask_tokens_out, obj_logits = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            repeat_image,
            high_res_features,
        )
        if multimask_output:
            masks, iou_pred = masks[:, 1:], iou_pred[:, 1:]
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
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """All four masks before selection: (B, 4, 4h, 4w), (B, 4), (B, 4, C), (B, 1)."""
        heads = [self.iou_token.weight, self.mask_tokens.weight]
        if self.pred_obj_scores:
            heads.insert(0, self.obj_score_token.weight)
        s = 1 if self.pred_obj_scores else 0
        b = sparse_prompt_embeddings.shape[0]
        output_tokens = torch.cat(heads, dim=0).unsqueeze(0).expand(b, -1, -1)
        tokens = torch.cat((output_tokens, sparse_prompt_embeddings), dim=1)

        dense = dense_prompt_embeddings
        if repeat_image and (dense.shape[0] == 1 or dense.stride(0) == 0):
            # one image and one dense embedding (no mask prompt) for every prompt: keep batch 1 and
            # let the transformer broadcast it, instead of copying the image B times
            src = image_embeddings + dense[:1]
        elif repeat_image:
            src = torch.repeat_interleave(image_embeddings, b, dim=0) + dense
        else:
            if image_embeddings.shape[0] != b:
                raise ValueError(f"{image_embeddings.shape[0]} image embeddings for {b} prompts")
            src = image_embeddings + dense
        pos_src = image_pe  # (1, C, h, w), broadcast over the batch
        c, h, w = src.shape[1:]

        hs, src = self.transformer(src, pos_src, tokens)
        iou_token_out = hs[:, s, :]
        mask_tokens_out = hs[:, s + 1 : s + 1 + self.num_mask_tokens, :]

        src = src.transpose(1, 2).reshape(b, c, h, w)
        if self.use_high_res_features:
            dc1, ln1, act1, dc2, act2 = self.output_upscaling
            feat_s0, feat_s1 = high_res_features
            up = act1(ln1(dc1(src) + feat_s1))
            up = act2(dc2(up) + feat_s0)
        else:
            up = self.output_upscaling(src)

        hyper_in = torch.stack(
            [mlp(mask_tokens_out[:, i, :]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        _, cu, hu, wu = up.shape
        masks = (hyper_in @ up.reshape(b, cu, hu * wu)).reshape(b, -1, hu, wu)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            obj_logits = self.pred_obj_score_head(hs[:, 0, :])
        else:
            obj_logits = 10.0 * iou_pred.new_ones(iou_pred.shape[0], 1)  # "object present"
        return masks, iou_pred, mask_tokens_out, obj_logits

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
