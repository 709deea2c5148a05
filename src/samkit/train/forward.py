"""The training forward: a clip's frames are encoded, prompts are simulated on its conditioning
frames, every frame is tracked with the memory of the frames before it in processing order, and
chosen frames receive correction clicks sampled from their errors. The same semantics as Meta's
``training.model.sam2.SAM2Train``, composed from samkit's tracking functions
(:mod:`samkit.video.tracking`), which are differentiable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..modeling import SAM2Model
from ..video.tracking import (
    FrameFeatures,
    FrameOutput,
    HeadsOutput,
    assemble_memory,
    condition_on_memory,
    encode_memory,
    mask_as_output,
    memory_plan,
    sam_heads,
)
from .batch import Batch
from .prompting import ClipPrompts, PromptSimulation, add_points, next_click, plan_prompts


@dataclass
class FrameResult:
    """The predictions on one frame for the batch's O objects, one entry per prediction step (the
    first prompt, then each correction click).

    multimasks: (O, M, S, S) logits of every candidate; low_res_multimasks: (O, M, S/4, S/4);
    ious: (O, M) predicted IoUs; object_score_logits: (O, 1); points: the clicks of each step
    ((O, n, 2) coordinates, (O, n) labels) or None. pred_masks / pred_masks_high_res: the final
    (O, 1, S/4, S/4) / (O, 1, S, S) logits, the ones the memory was made from.
    """

    multimasks: list[torch.Tensor] = field(default_factory=list)
    low_res_multimasks: list[torch.Tensor] = field(default_factory=list)
    ious: list[torch.Tensor] = field(default_factory=list)
    object_score_logits: list[torch.Tensor] = field(default_factory=list)
    points: list[tuple[torch.Tensor, torch.Tensor] | None] = field(default_factory=list)
    pred_masks: torch.Tensor | None = None
    pred_masks_high_res: torch.Tensor | None = None

    def add(self, heads: HeadsOutput, points: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self.multimasks.append(heads.high_res_multimasks)
        self.low_res_multimasks.append(heads.low_res_multimasks)
        self.ious.append(heads.ious)
        self.object_score_logits.append(heads.object_score_logits)
        self.points.append(points)


def use_multimask(model: SAM2Model, is_init_cond_frame: bool, points) -> bool:
    """Several candidate masks for an ambiguous prompt: at most one click (a box counts as two)."""
    cfg = model.cfg
    n = 0 if points is None else points[1].shape[1]
    return (
        cfg.multimask_output_in_sam
        and (is_init_cond_frame or cfg.multimask_output_for_tracking)
        and cfg.multimask_min_pt_num <= n <= cfg.multimask_max_pt_num
    )


def train_forward(
    model: SAM2Model,
    batch: Batch,
    sim: PromptSimulation,
    rng: np.random.Generator,
    prompts: ClipPrompts | None = None,
) -> tuple[list[FrameResult], ClipPrompts]:
    """Predictions on every frame of ``batch`` with simulated prompts (``prompts`` to give them
    instead of drawing them from ``rng``). Training semantics when ``model.training`` (memory of
    consecutive frames, pointers of every conditioning frame, soft masks into the memory), the
    inference ones otherwise. Returns the per-frame results in time order and the prompt plan."""
    num_frames = batch.num_frames
    gt = {t: batch.masks[t].unsqueeze(1) for t in range(num_frames)}
    if prompts is None:
        prompts = plan_prompts(sim, gt, num_frames, rng)
    training = model.training

    backbone = model.forward_image(batch.flat_img_batch)
    *high_res_all, top_all = backbone.features
    top_pos_all = backbone.pos[-1]
    img_idx = batch.flat_obj_to_img_idx.long()

    cond: dict[int, FrameOutput] = {}
    non_cond: dict[int, FrameOutput] = {}
    results: dict[int, FrameResult] = {}
    for t in prompts.processing_order:
        ids = img_idx[t]
        feats = FrameFeatures([f[ids] for f in high_res_all], top_all[ids], top_pos_all[ids])
        is_init = t in prompts.init_cond_frames
        points = prompts.points.get(t)
        mask_in = prompts.masks.get(t)
        res = FrameResult()
        if mask_in is not None and model.cfg.use_mask_input_as_output_without_sam:
            pix_feat = feats.top
            heads = mask_as_output(model, feats, mask_in)
        else:
            memory = None
            if not is_init:
                plan = memory_plan(model, t, cond, non_cond, num_frames, reverse=False, training=training)
                memory = assemble_memory(model, plan, [(cond, non_cond)], num_frames, feats.top.device)
            pix_feat = condition_on_memory(model, feats, is_init, memory)
            heads = sam_heads(
                model,
                pix_feat,
                feats.high_res,
                points,
                mask_in,
                use_multimask(model, is_init, points),
                all_masks=True,
            )
        res.add(heads, points)
        if t in prompts.frames_to_correct:
            for _ in range(sim.num_correction_points):
                from_gt = training and sim.prob_sample_from_gt > 0 and rng.random() < sim.prob_sample_from_gt
                pred = None if from_gt else heads.high_res_masks > 0
                points = add_points(points, next_click(gt[t], pred, sim.point_sampling))
                heads = sam_heads(
                    model,
                    pix_feat,
                    feats.high_res,
                    points,
                    heads.low_res_masks,  # the previous step's logits go in with the new click
                    use_multimask(model, is_init, points),
                    all_masks=True,
                )
                res.add(heads, points)
        res.pred_masks, res.pred_masks_high_res = heads.low_res_masks, heads.high_res_masks
        maskmem, maskmem_pos = encode_memory(
            model,
            feats.top,
            heads.high_res_masks,
            heads.object_score_logits,
            is_mask_from_pts=points is not None,
            binarize_mask_from_pts=False,  # the model (not the interactive predictor) never binarizes
        )
        out = FrameOutput(heads.low_res_masks, heads.obj_ptr, heads.object_score_logits, maskmem, maskmem_pos)
        as_cond = is_init or (sim.add_all_frames_to_correct_as_cond and t in prompts.frames_to_correct)
        (cond if as_cond else non_cond)[t] = out
        results[t] = res
    return [results[t] for t in range(num_frames)], prompts
