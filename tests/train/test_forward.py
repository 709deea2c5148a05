"""Unit tests of the training pieces: simulated prompts on hand-made masks, the loss on hand-made
predictions, regularization in train mode only, the prompt plan's rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import samkit
from samkit.train.batch import collate
from samkit.train.forward import train_forward
from samkit.train.loss import LossWeights, MultiStepLoss, dice_loss, focal_loss, mask_iou
from samkit.train.optim import cosine_lr, lr_scale, set_regularization
from samkit.train.prompting import (
    PromptSimulation,
    box_prompt,
    click_center,
    click_uniform,
    mask_to_box,
    plan_prompts,
)
from samkit.train.synthetic import Shapes


def square(h=20, w=30, y0=5, y1=10, x0=7, x1=19) -> torch.Tensor:
    m = torch.zeros(1, 1, h, w, dtype=torch.bool)
    m[..., y0:y1, x0:x1] = True
    return m


def test_mask_to_box_and_box_prompt_without_noise():
    m = square()
    assert mask_to_box(m).tolist() == [[[7, 5, 18, 9]]]
    pts, labels = box_prompt(m, noise=0.0)
    assert pts.tolist() == [[[7.0, 5.0], [18.0, 9.0]]] and labels.tolist() == [[2, 3]]


def test_box_noise_is_bounded_and_clamped():
    m = square(y0=0, x0=0)  # touching the top-left corner: noise cannot push it outside
    torch.manual_seed(0)
    for _ in range(20):
        pts, _ = box_prompt(m, noise=0.1, noise_bound=20)
        assert pts.min() >= 0
        # 10% of an 19 x 10 box: at most 1.9 and 1.0 pixels of jitter
        assert (pts[0, 1] - torch.tensor([18.0, 9.0])).abs().max() <= 1.9 + 1e-6


def test_uniform_click_lands_in_the_error_with_the_right_label():
    gt = square()
    pred = torch.zeros_like(gt)
    pred[..., 5:10, 7:13] = True  # the right part of the square is missed
    pred[..., 15:18, 0:3] = True  # a false alarm bottom-left
    torch.manual_seed(1)
    labels_seen = set()
    for _ in range(30):
        pts, labels = click_uniform(gt, pred)
        x, y = pts[0, 0].long().tolist()
        labels_seen.add(labels.item())
        if labels.item() == 1:
            assert gt[0, 0, y, x] and not pred[0, 0, y, x]
        else:
            assert pred[0, 0, y, x] and not gt[0, 0, y, x]
    assert labels_seen == {0, 1}  # both kinds of error get clicks
    # a perfect prediction: a negative click on the background
    pts, labels = click_uniform(gt, gt.clone())
    x, y = pts[0, 0].long().tolist()
    assert labels.item() == 0 and not gt[0, 0, y, x]


def test_center_click_is_the_farthest_point_from_the_error_boundary():
    gt = square(h=21, w=21, y0=0, y1=21, x0=0, x1=21)  # everything
    pts, labels = click_center(gt, None)
    assert labels.item() == 1 and pts[0, 0].tolist() == [10.0, 10.0]
    pts, labels = click_center(torch.zeros_like(gt), square(h=21, w=21, y0=2, y1=9, x0=2, x1=9))
    assert labels.item() == 0 and pts[0, 0].tolist() == [5.0, 5.0]


def test_plan_rules():
    gt = {t: square() for t in range(8)}
    sim = PromptSimulation()
    seen_mask, seen_points = False, False
    for seed in range(40):
        torch.manual_seed(seed)
        p = plan_prompts(sim, gt, 8, np.random.default_rng(seed))
        assert p.init_cond_frames[0] == 0 and 1 <= len(p.init_cond_frames) <= 2
        assert p.processing_order[: len(p.init_cond_frames)] == p.init_cond_frames
        assert sorted(p.processing_order) == list(range(8))
        if p.use_points:
            seen_points = True
            assert set(p.points) == set(p.init_cond_frames) and not p.masks
            assert p.frames_to_correct[: len(p.init_cond_frames)] == p.init_cond_frames
            assert len(p.frames_to_correct) <= 2
        else:
            seen_mask = True
            assert set(p.masks) == set(p.init_cond_frames) and not p.points and not p.frames_to_correct
    assert seen_mask and seen_points
    # an image always gets clicks or a box and corrections
    for seed in range(10):
        p = plan_prompts(sim, {0: square()}, 1, np.random.default_rng(seed))
        assert p.use_points and p.init_cond_frames == [0] and p.frames_to_correct == [0]


def test_bad_simulation_settings():
    with pytest.raises(ValueError, match="prob_points"):
        PromptSimulation(prob_points=1.5)
    with pytest.raises(ValueError, match="point_sampling"):
        PromptSimulation(point_sampling="random")


def test_loss_terms_on_hand_made_predictions():
    target = torch.zeros(1, 1, 4, 4)
    target[..., :2, :] = 1
    perfect = (target * 40 - 20).expand(1, 3, 4, 4)
    assert dice_loss(perfect, target.expand(1, 3, 4, 4)).max() < 1e-6
    assert mask_iou(perfect, target.expand(1, 3, 4, 4)).tolist() == [[1.0, 1.0, 1.0]]
    # focal: a confident right answer costs ~0, a confident wrong one a lot
    assert focal_loss(torch.tensor([20.0]), torch.tensor([1.0]), 0.25, 2).item() < 1e-8
    assert focal_loss(torch.tensor([-20.0]), torch.tensor([1.0]), 0.25, 2).item() > 4
    # dice of an empty prediction against a half-full target: 1 - 1 / (8 + 1)
    empty = torch.full((1, 1, 4, 4), -1e4)
    assert dice_loss(empty, target).item() == pytest.approx(1 - 1 / 9, abs=1e-6)


def test_multistep_loss_supervises_the_best_candidate_and_skips_absent_objects():
    from samkit.train.forward import FrameResult

    target = torch.zeros(1, 2, 4, 4, dtype=torch.bool)  # T=1, O=2
    target[0, 0, :2] = True  # object 1 absent
    good = target[0, 0].float() * 40 - 20
    bad = -good
    res = FrameResult()
    masks = torch.stack([torch.stack([bad, good, bad]), torch.stack([bad, bad, bad])])  # (2, 3, 4, 4)
    res.multimasks = [masks]
    res.ious = [torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.5, 0.5]])]
    res.object_score_logits = [torch.tensor([[20.0], [-20.0]])]
    loss = MultiStepLoss(LossWeights())([res], target)
    # object 0: the good candidate is chosen (mask and dice ~0); its IoU loss averages over the 3
    # candidates (|0 - 0| + |1 - 1| + |0 - 0|) / 3 = 0; object 1 is absent: only its object score counts
    assert loss["loss_mask"].item() < 1e-6 and loss["loss_dice"].item() < 1e-6
    assert loss["loss_iou"].item() == pytest.approx(0.0, abs=1e-6)
    assert loss["loss_class"].item() < 1e-6


def test_optimizer_rules():
    # the last trunk block gets decay^1, the first decay^depth, the patch embedding decay^(depth+1)
    assert lr_scale("image_encoder.trunk.blocks.11.attn.qkv.weight", 12, 0.9) == pytest.approx(0.9)
    assert lr_scale("image_encoder.trunk.blocks.0.mlp.layers.0.weight", 12, 0.9) == pytest.approx(0.9**12)
    assert lr_scale("image_encoder.trunk.patch_embed.proj.weight", 12, 0.9) == pytest.approx(0.9**13)
    assert lr_scale("image_encoder.trunk.pos_embed", 12, 0.9) == 1.0
    assert lr_scale("sam_mask_decoder.iou_token.weight", 12, 0.9) == 1.0
    assert cosine_lr(1.0, 0.0, 0.1) == 1.0 and cosine_lr(1.0, 1.0, 0.1) == pytest.approx(0.1)
    assert cosine_lr(1.0, 0.5, 0.1) == pytest.approx(0.55)


def test_regularization_acts_in_training_mode_only(tiny_checkpoint):
    model = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu")
    batch = collate([Shapes(1, num_frames=3, source_size=128)[0]])
    sim = PromptSimulation(prob_points=0.0)

    def run(seed):
        torch.manual_seed(seed)
        with torch.no_grad():
            res, _ = train_forward(model, batch, sim, np.random.default_rng(0))
        return torch.cat([r.pred_masks for r in res])

    set_regularization(model, dropout=0.0, drop_path=0.0)
    model.train()
    plain = run(0)
    set_regularization(model, dropout=0.1, drop_path=0.1)
    assert not torch.equal(run(0), plain)  # dropout and drop path change training predictions
    assert torch.equal(run(0), run(0))  # ... deterministically for a seed
    model.eval()
    with_reg_eval = run(1)
    set_regularization(model, dropout=0.0, drop_path=0.0)
    assert torch.equal(run(2), with_reg_eval)  # and nothing in eval mode
    blocks = model.image_encoder.trunk.blocks
    set_regularization(model, dropout=0.1, drop_path=0.1)
    assert blocks[0].drop_path == 0.0 and blocks[-1].drop_path == pytest.approx(0.1)
