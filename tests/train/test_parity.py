"""samkit's training forward and loss against Meta's `SAM2Train` + `MultiStepMultiMasksAndIous` (the
oracle ships them in the sam2 wheel), on a perturbed checkpoint at a reduced resolution.

Both sides take the same random choices: the prompt plan comes from a numpy Generator (the
reference's `model.rng`) and the click/box noise from torch's global generator, seeded the same way
before each forward. Dropout is off on both sides (its placement is tested in test_forward.py).
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch

import oracle
import samkit
from samkit.configs import get_config
from samkit.train.batch import Sample, collate
from samkit.train.forward import train_forward
from samkit.train.loss import MultiStepLoss
from samkit.train.optim import OptimSettings, complete_decoder_grads, param_groups
from samkit.train.prompting import PromptSimulation, plan_prompts

pytestmark = pytest.mark.parity
VARIANT = "sam2.1-hiera-tiny"
SIZE = 128


@functools.lru_cache(maxsize=1)
def _checkpoint():
    return oracle.checkpoint(VARIANT)


def reference(checkpoint=None):
    """The reference trainer with its dropout off (random by design: see the module docstring)."""
    ref = oracle.build_reference_train(VARIANT, checkpoint or _checkpoint(), SIZE)
    for m in ref.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "dropout_p"):
            m.dropout_p = 0.0
    return ref


def ours():
    cfg = dataclasses.replace(get_config(VARIANT), image_size=SIZE)
    return samkit.load_model(cfg, checkpoint=_checkpoint(), device="cpu").train()


def moving_boxes(num_frames: int, num_objects: int, seed: int) -> Sample:
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(num_frames, 3, SIZE, SIZE, generator=g)
    masks = torch.zeros(num_frames, num_objects, SIZE, SIZE, dtype=torch.bool)
    for o in range(num_objects):
        x0, y0 = 8 + 40 * o, 10 + 17 * o
        for t in range(num_frames):
            x, y = x0 + 5 * t, y0 + 3 * t
            masks[t, o, y : y + SIZE // 4, x : x + SIZE // 5] = True
    if num_frames > 2 and num_objects > 1:
        masks[num_frames // 2, 1] = False  # an object absent from one frame: trains the object score
    return Sample(frames, masks, list(range(num_objects)), f"clip{seed}")


def run_both(ref, mine, batch, sim, seed):
    ref.rng = np.random.default_rng(seed)
    torch.manual_seed(1000 + seed)
    ref_outs = ref(batch)
    ref_loss = oracle.reference_train_loss()(ref_outs, batch.masks)
    torch.manual_seed(1000 + seed)
    results, plan = train_forward(mine, batch, sim, np.random.default_rng(seed))
    loss = MultiStepLoss()(results, batch.masks)
    return ref_outs, ref_loss, results, loss, plan


def assert_same_predictions(ref_outs, results):
    assert len(ref_outs) == len(results)
    for t, (ro, r) in enumerate(zip(ref_outs, results)):
        steps = ro["multistep_pred_multimasks_high_res"]
        assert len(steps) == len(r.multimasks), f"frame {t}: {len(steps)} steps vs {len(r.multimasks)}"
        for a, b in zip(steps, r.multimasks):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-4)
        for a, b in zip(ro["multistep_pred_ious"], r.ious):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
        for a, b in zip(ro["multistep_object_score_logits"], r.object_score_logits):
            torch.testing.assert_close(b, a, rtol=0, atol=1e-5)
        for a, b in zip(ro["multistep_point_inputs"], r.points):
            if a is None:
                assert b is None
            else:
                assert torch.equal(a["point_coords"], b[0]) and torch.equal(a["point_labels"], b[1])
        torch.testing.assert_close(r.pred_masks, ro["pred_masks"], rtol=0, atol=1e-4)


def assert_same_losses(ref_loss, loss):
    for k in ("loss_mask", "loss_dice", "loss_iou", "loss_class"):
        torch.testing.assert_close(loss[k], ref_loss[k].to(loss[k].dtype), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss["total"], ref_loss["core_loss"], rtol=1e-5, atol=1e-6)


def assert_same_grads(ref, mine):
    """Every parameter's gradient within 1e-4 relative (in norm) of the reference's; a gradient that
    is zero in exact arithmetic (the attention keys' biases: softmax ignores a shift shared by all
    keys) is rounding noise on both sides and is held to the scale of the model's gradients."""
    ref_params = dict(ref.named_parameters())
    scale = max(p.grad.abs().max().item() for p in ref.parameters() if p.grad is not None)
    compared = 0
    for name, p in mine.named_parameters():
        q = ref_params[name]
        a = p.grad if p.grad is not None else torch.zeros_like(p)
        b = q.grad if q.grad is not None else torch.zeros_like(q)
        if name.endswith("k_proj.bias"):
            assert (a - b).abs().max().item() <= 1e-5 * scale, name
            continue
        rel = ((a - b).norm() / b.norm().clamp_min(1e-8 * scale)).item()
        assert rel <= 1e-4, f"{name}: gradient differs by {rel:.2e} (relative)"
        compared += int(b.abs().max().item() > 0)
    assert compared > 100  # the comparison covered the model, not a handful of tensors


def check_seeds(ref, mine, batch, sim, seeds, steps_on_frame0=None):
    """For each seed: the same predictions, losses and gradients on both sides."""
    for seed in seeds:
        ref.zero_grad(set_to_none=True)
        mine.zero_grad(set_to_none=True)
        ref_outs, ref_loss, results, loss, plan = run_both(ref, mine, batch, sim, seed)
        if steps_on_frame0 is not None:
            assert len(results[0].multimasks) == steps_on_frame0
        assert_same_predictions(ref_outs, results)
        assert_same_losses(ref_loss, loss)
        ref_loss["core_loss"].backward()
        loss["total"].backward()
        assert_same_grads(ref, mine)


def _plan(seed, sim, num_frames, num_objects):
    gt = {t: torch.ones(num_objects, 1, 4, 4, dtype=torch.bool) for t in range(num_frames)}
    torch.manual_seed(0)
    return plan_prompts(sim, gt, num_frames, np.random.default_rng(seed))


def _seed_where(pred, sim, num_frames, num_objects=2):
    return next(s for s in range(200) if pred(_plan(s, sim, num_frames, num_objects)))


def test_image_batch_matches_reference():
    ref, mine = reference(), ours()
    # two images with 2 and 1 objects: a click on each (with 7 corrections), then a box
    batch = collate([moving_boxes(1, 2, 0), moving_boxes(1, 1, 1)])
    sim = PromptSimulation()
    seeds = [
        _seed_where(lambda p, n=n: 0 in p.points and p.points[0][1].shape[1] == n, sim, 1) for n in (1, 2)
    ]
    check_seeds(ref, mine, batch, sim, seeds, steps_on_frame0=1 + sim.num_correction_points)


def test_video_batch_matches_reference():
    """8 frames, 2 objects: one clip prompted with masks on 2 conditioning frames, one with clicks
    where a second, non-conditioning frame is corrected and becomes a conditioning frame."""
    ref, mine = reference(), ours()
    batch = collate([moving_boxes(8, 2, 3)])
    sim = PromptSimulation()
    mask_seed = _seed_where(lambda p: not p.use_points and len(p.init_cond_frames) == 2, sim, 8)
    click_seed = _seed_where(
        lambda p: p.use_points and len(p.frames_to_correct) > len(p.init_cond_frames), sim, 8
    )
    check_seeds(ref, mine, batch, sim, (mask_seed, click_seed))


def test_three_optimizer_steps_give_the_same_weights():
    """AdamW with Meta's parameter groups and gradient clipping on both sides, 3 steps on a 4-frame
    clip (a larger learning rate than the default, so the steps move the weights measurably)."""
    ref, mine = reference(), ours()
    settings = OptimSettings(lr=1e-4, encoder_lr=6e-5)
    groups = param_groups(mine, settings)
    ref_params = dict(ref.named_parameters())

    def adamw(model_params, use_ref):
        out = []
        for g in groups:
            params = [ref_params[n] for n in g["names"]] if use_ref else g["params"]
            out.append(
                {"params": params, "lr": g["base_lr"] * g["lr_scale"], "weight_decay": g["weight_decay"]}
            )
        return torch.optim.AdamW(out)

    opt_ref, opt_mine = adamw(None, True), adamw(None, False)
    batch = collate([moving_boxes(4, 2, 5)])
    sim = PromptSimulation()
    before = {n: p.detach().clone() for n, p in mine.named_parameters()}
    for step in range(3):
        opt_ref.zero_grad(set_to_none=True)
        opt_mine.zero_grad(set_to_none=True)
        _, ref_loss, _, loss, _ = run_both(ref, mine, batch, sim, 10 + step)
        ref_loss["core_loss"].backward()
        loss["total"].backward()
        complete_decoder_grads(mine)  # as fit does: the zero gradients the reference's decoder computes
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.1)
        torch.nn.utils.clip_grad_norm_(mine.parameters(), 0.1)
        opt_ref.step()
        opt_mine.step()
    # Adam divides by the gradient's running scale, so elements whose gradient is rounding noise take
    # steps of either sign on either side: hold each tensor's update (not its raw value) to the
    # reference's, in norm
    moved, worst = 0, []
    for name, p in mine.named_parameters():
        ours_step = p.detach() - before[name]
        ref_step = ref_params[name].detach() - before[name]
        if name.endswith("k_proj.bias"):
            continue  # its exact gradient is zero (see assert_same_grads): the reference's steps are noise
        rel = ((ours_step - ref_step).norm() / ref_step.norm().clamp_min(1e-12)).item()
        worst.append((rel, name))
        moved += int(ref_step.abs().max().item() > 0)
    worst.sort(reverse=True)
    assert worst[0][0] <= 1e-2, worst[:5]
    assert moved > 100


def test_parameter_groups_match_the_reference_layer_decay():
    """The learning-rate multiplier of every parameter equals what the reference's
    `layer_decay_param_modifier` (decay 0.9 on image_encoder.trunk, pos_embed overridden to 1) gives."""
    oracle.setup_training()
    from training.optimizer import layer_decay_param_modifier

    ref = reference()
    names = {n for n, _ in ref.named_parameters()}
    cfgs = [[{"option": "lr", "scheduler": (lambda where: 1.0), "parameter_names": names}]]
    out = layer_decay_param_modifier(
        cfgs,
        ref,
        layer_decay_value=0.9,
        apply_to="image_encoder.trunk",
        overrides=[{"pattern": "*pos_embed*", "value": 1.0}],
    )
    expected = {}
    for c in out[0]:
        for n in c["parameter_names"]:
            expected[n] = c["scheduler"](0.0)
    mine = ours()
    got = {n: g["lr_scale"] for g in param_groups(mine, OptimSettings()) for n in g["names"]}
    assert got.keys() == expected.keys()
    for n in got:
        assert got[n] == pytest.approx(expected[n], rel=1e-12), n
    # weight decay: off for biases and the reference's torch.nn.LayerNorm modules, on elsewhere
    ln = {
        f"{m}.{p}"
        for m, mod in ref.named_modules()
        if isinstance(mod, torch.nn.LayerNorm)
        for p, _ in mod.named_parameters(recurse=False)
    }
    no_wd = {n for n in names if "bias" in n} | ln
    got_wd = {n: g["weight_decay"] for g in param_groups(mine, OptimSettings()) for n in g["names"]}
    assert {n for n, wd in got_wd.items() if wd == 0.0} == no_wd


def test_a_trained_checkpoint_loads_into_the_reference(tmp_path):
    """Two steps of `fit` on generated shapes, then the saved file: the reference loads it with
    strict=True and predicts what samkit predicts with it."""
    from samkit.train import TrainSettings, fit
    from samkit.train.synthetic import Shapes

    settings = TrainSettings(steps=2, optim=OptimSettings(lr=1e-4), precision="fp32", progress=False)
    result = fit(ours(), Shapes(2, source_size=SIZE), settings, out=tmp_path / "run")
    trained = torch.load(result.checkpoint, weights_only=True)["model"]
    start = torch.load(_checkpoint(), weights_only=True)["model"]
    assert trained.keys() == start.keys()
    assert any(not torch.equal(trained[k], start[k]) for k in trained)
    ref = reference(result.checkpoint)  # strict=True inside
    cfg = dataclasses.replace(get_config(VARIANT), image_size=SIZE)
    mine = samkit.load_model(cfg, checkpoint=result.checkpoint, device="cpu").train()
    batch = collate([moving_boxes(4, 2, 7)])
    ref_outs, ref_loss, results, loss, _ = run_both(ref, mine, batch, PromptSimulation(), 3)
    assert_same_predictions(ref_outs, results)
    assert_same_losses(ref_loss, loss)
