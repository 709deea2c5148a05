"""kernels.cells: stability scores and boxes by cells of the low-res grid equal upsampling first (the
plain expression: F.interpolate, then amg.stability_score and amg.batched_mask_to_box)."""

from __future__ import annotations

import pytest
import torch

from samkit import amg
from samkit.kernels.cells import upsampled_stability_and_boxes


def blob_logits(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    """(n, h, w) mask-like logits: a few ellipses, scaled like a decoder's (steep at the outline)."""
    g = torch.Generator().manual_seed(seed)
    ys, xs = torch.meshgrid(
        torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij"
    )
    out = torch.full((n, h, w), -20.0)
    for k in range(n):
        for _ in range(3):
            cy, cx = torch.rand(2, generator=g) * torch.tensor([h, w])
            ry, rx = 2 + torch.rand(2, generator=g) * torch.tensor([h / 3, w / 3])
            d = 1 - ((ys - cy) / ry) ** 2 - ((xs - cx) / rx) ** 2
            out[k] = torch.maximum(out[k], d * (3 + 30 * torch.rand(1, generator=g)))
    return out


def direct_scores(low, size, thr, offset):
    full = torch.nn.functional.interpolate(low[:, None], size=size, mode="bilinear", align_corners=False)[
        :, 0
    ]
    return amg.stability_score(full, thr, offset), amg.batched_mask_to_box(full > thr)


@pytest.mark.parametrize(
    "low_hw,size",
    [
        ((256, 256), (800, 1200)),
        ((256, 256), (1201, 799)),
        ((64, 48), (333, 517)),
        ((64, 64), (64, 64)),
        ((64, 64), (40, 90)),
    ],
)
@pytest.mark.parametrize("thr,offset", [(0.0, 1.0), (0.5, 0.05), (-2.0, 0.0)])
def test_upsampled_scores_by_cells_equal_upsampling(low_hw, size, thr, offset):
    low = blob_logits(6, *low_hw, seed=sum(size))
    low[0] = -5.0  # empty: NaN stability, zero box
    low[1] = 7.0  # everything
    low[2, :2, -3:] = 40.0  # a corner pixel: the box ends at the image edge
    low[3, 10, 10] = thr  # exactly at the threshold
    ours = upsampled_stability_and_boxes(low, size, thr, offset, max_boundary=10.0)
    assert ours is not None
    stab, boxes = ours
    ref_stab, ref_boxes = direct_scores(low, size, thr, offset)
    assert torch.equal(boxes, ref_boxes)
    assert torch.equal(stab.isnan(), ref_stab.isnan())
    # bit-equal where PyTorch's kernel fuses multiply-adds as addcmul does (any AVX2/AVX-512 CPU);
    # within a pixel's worth otherwise
    assert torch.allclose(stab.nan_to_num(), ref_stab.nan_to_num(), rtol=0, atol=1e-6)


def test_upsampled_scores_by_cells_give_up_on_noise():
    noise = torch.randn(4, 256, 256)
    assert upsampled_stability_and_boxes(noise, (800, 1200), 0.0, 1.0) is None
    smooth = blob_logits(4, 256, 256, seed=1)
    assert upsampled_stability_and_boxes(smooth, (800, 1200), 0.0, 1.0) is not None
    smooth[1, :5] = float("-inf")  # a dropped mask's logits: left to F.interpolate
    assert upsampled_stability_and_boxes(smooth, (800, 1200), 0.0, 1.0, max_boundary=10.0) is None


def test_the_generator_scores_by_cells_only_where_the_policy_says(tiny_model, monkeypatch):
    """amg_cells off (GPUs): the generator upsamples, even for a crop far larger than its logits."""
    import numpy as np

    import samkit
    from samkit import policy
    from samkit.predictors import automatic

    used = []
    real = amg.upsampled_stability_and_boxes
    monkeypatch.setattr(amg, "upsampled_stability_and_boxes", lambda *a, **k: used.append(1) or real(*a, **k))
    monkeypatch.setattr(automatic, "CELL_MIN_SCALE", 1)
    image = np.random.default_rng(0).integers(0, 256, (270, 420, 3), dtype=np.uint8)
    kw = dict(points_per_side=2, stability_score_thresh=0.0, pred_iou_thresh=0.0, output_mode="coco_rle")
    with policy.override(amg_cells=False):
        off = samkit.AutomaticMaskGenerator(tiny_model, **kw).generate(image)
    assert used == []
    on = samkit.AutomaticMaskGenerator(tiny_model, **kw).generate(image)
    assert used and [a["bbox"] for a in on] == [a["bbox"] for a in off]
