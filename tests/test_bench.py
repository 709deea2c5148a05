"""samkit.bench helpers on the tiny config (timings are not asserted: they belong to benchmarks)."""

from __future__ import annotations

import numpy as np

import samkit
from samkit.bench import click_agreement


def test_click_agreement_is_one_for_the_same_path_and_less_for_another(tiny_model, tiny_checkpoint):
    image = np.random.default_rng(0).integers(0, 256, (90, 140, 3), dtype=np.uint8)
    same = click_agreement(samkit.ImagePredictor(tiny_model), samkit.ImagePredictor(tiny_model), image, clicks=4)
    assert same == {"min_iou": 1.0, "mean_iou": 1.0, "max_score_diff": 0.0}
    # another model (other weights): the masks and scores differ, and the measure says so
    other = samkit.load_model("test-tiny", checkpoint=tiny_checkpoint, device="cpu")
    for p in other.sam_mask_decoder.output_hypernetworks_mlps.parameters():
        p.data.mul_(-1.0)
    diff = click_agreement(samkit.ImagePredictor(tiny_model), samkit.ImagePredictor(other), image, clicks=4)
    assert diff["min_iou"] < 1.0 and diff["max_score_diff"] >= 0.0
    assert 0.0 <= diff["min_iou"] <= diff["mean_iou"] <= 1.0
