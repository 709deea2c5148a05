"""samkit.eval.clicks and samkit.eval.auto: the click protocol on hand-made masks and a scripted
predictor, recall on hand-made detections, and both end to end on the tiny model and generated data."""

from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samkit.eval import EvalError, auto, clicks
from samkit.eval.auto import average_recall, best_ious
from samkit.eval.clicks import mask_iou, next_click, number_of_clicks, simulate
from samkit.eval.data import ImageSet
from samkit.train.synthetic import Shapes, write_mask_folder


def square(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


# --- the protocol ------------------------------------------------------------------------------


def test_first_click_is_the_interior_point_farthest_from_the_boundary():
    gt = square(40, 60, 5, 16, 20, 51)  # 11 x 31: the centre row is 10, the farthest columns 25..45
    (x, y), label = next_click(gt, None)
    assert label == 1 and y == 10 and x == 25  # the first of the farthest pixels, row-major
    # the image border counts as boundary
    gt = square(40, 60, 0, 40, 0, 9)
    (x, y), label = next_click(gt, None)
    assert label == 1 and x == 4


def test_next_click_goes_to_the_larger_error():
    gt = square(40, 60, 10, 30, 10, 30)
    missed = gt & ~square(40, 60, 10, 30, 10, 16)  # a 20 x 6 strip missed on the left
    (x, y), label = next_click(gt, missed)
    assert label == 1 and 10 <= x < 16
    alarm = gt | square(40, 60, 10, 30, 40, 52)  # a 20 x 12 false alarm beside it
    (x, y), label = next_click(gt, alarm)
    assert label == 0 and 40 <= x < 52
    assert next_click(gt, gt.copy()) is None


def test_number_of_clicks():
    assert number_of_clicks([0.5, 0.86, 0.91], 0.85, 3) == 2
    assert number_of_clicks([0.5, 0.86, 0.91], 0.9, 3) == 3
    assert number_of_clicks([0.5, 0.6, 0.7], 0.85, 3) == 3  # never reached: N
    assert mask_iou(square(8, 8, 0, 4, 0, 4), square(8, 8, 0, 4, 0, 2)) == 0.5


class ScriptedPredictor:
    """Predicts the ground truth's bounding box rows grown by one row per click; records its inputs."""

    def __init__(self, gt):
        self.gt, self.calls = gt, []

    def predict(self, point_coords, point_labels, mask_input, multimask_output, box=None):
        self.calls.append((point_coords.copy(), point_labels.copy(), mask_input, multimask_output))
        n = len(point_coords)
        rows = np.nonzero(self.gt.any(axis=1))[0]
        pred = np.zeros_like(self.gt)
        pred[rows[0] : rows[0] + 4 * n] = self.gt[rows[0] : rows[0] + 4 * n]
        low = np.full((1, 8, 8), float(n))
        if multimask_output:  # three candidates; the second scores best
            empty = np.zeros_like(pred)
            return np.stack([empty, pred, empty]), np.array([0.1, 0.9, 0.2]), np.repeat(low, 3, 0)
        return pred[None].astype(np.float32), np.array([0.5]), low


def test_simulate_feeds_back_logits_and_keeps_the_best_first_mask():
    gt = square(40, 40, 4, 20, 4, 20)  # 16 rows: 4 clicks make it exact
    pred = ScriptedPredictor(gt)
    ious, path = simulate(pred, gt, max_clicks=6)
    assert ious[:4] == pytest.approx([4 / 16, 8 / 16, 12 / 16, 1.0])
    assert ious[4:] == [1.0, 1.0]  # exact after 4 clicks: no more clicks
    assert len(path) == len(pred.calls) == 4 and all(lab == 1 for *_, lab in path)
    assert pred.calls[0][2] is None and pred.calls[0][3] is True
    for k in range(1, 4):
        assert pred.calls[k][3] is False
        assert float(pred.calls[k][2].ravel()[0]) == k  # the previous call's logits
        assert len(pred.calls[k][0]) == k + 1  # all clicks so far
    assert number_of_clicks(ious, 0.85, 6) == 4 and number_of_clicks(ious, 0.7, 6) == 3


# --- recall ------------------------------------------------------------------------------------


def rle(m):
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))


def test_average_recall_and_best_iou_on_hand_made_detections():
    a, b = square(64, 64, 0, 20, 0, 20), square(64, 64, 30, 60, 30, 60)
    half = square(64, 64, 0, 20, 0, 14)  # IoU 0.7 with a
    r = average_recall([[rle(a), rle(b)]], [[(rle(a), 0.9)]])
    assert r["AR@1"] == pytest.approx(0.5) and r["AR@1000"] == pytest.approx(0.5)
    # IoU 0.7 is a hit at thresholds 0.50..0.70: 5 of 10
    r = average_recall([[rle(a)]], [[(rle(half), 0.9)]])
    assert r["AR@100"] == pytest.approx(0.5)
    # ranking matters: with one detection allowed, the higher-scored miss hides the hit
    r = average_recall([[rle(a)]], [[(rle(b), 0.9), (rle(a), 0.5)]])
    assert r["AR@1"] == 0.0 and r["AR@10"] == pytest.approx(1.0)
    assert best_ious([rle(a), rle(b)], [rle(half), rle(a)]).tolist() == pytest.approx([1.0, 0.0])
    assert best_ious([rle(a)], []).tolist() == [0.0]


# --- end to end on the tiny model --------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    images, masks = write_mask_folder(
        Shapes(3, max_objects=2, source_size=96, data_seed=3), tmp_path_factory.mktemp("s")
    )
    return f"folder:{images}:{masks}"


def test_clicks_on_the_tiny_model(tiny_model, shapes):
    result = clicks(tiny_model, shapes, max_clicks=3)
    assert result.images == 3 and result.objects == len(result.per_object) >= 3
    assert len(result.miou) == 3 and all(0 <= v <= 1 for v in result.miou)
    assert all(1 <= v <= 3 for v in result.noc.values()) and 0 <= result.box_miou <= 1
    again = clicks(tiny_model, ImageSet(shapes), max_clicks=3)  # deterministic
    assert again.miou == result.miou and [o["clicks"] for o in again.per_object] == [
        o["clicks"] for o in result.per_object
    ]
    json.dumps(result.to_dict())
    assert clicks(tiny_model, ImageSet(shapes, max_objects=1, max_images=2), max_clicks=1).objects == 2


def test_auto_on_the_tiny_model(tiny_model, shapes):
    result = auto(
        tiny_model, shapes, max_images=2, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    )
    assert result.images == 2 and result.objects >= 2
    assert set(result.recall) >= {"AR@100", "AR@1000"} and 0 <= result.recall["AR@1000"] <= 1
    assert 0 <= result.mean_best_iou <= 1 and result.seconds_per_image > 0
    assert result.masks_per_image == np.mean([p["masks"] for p in result.per_image])


def test_image_set_errors(tmp_path, shapes):
    with pytest.raises(EvalError, match="a video dataset"):
        ImageSet(f"davis:{tmp_path}:{tmp_path}")
    with pytest.raises(EvalError, match="mask folder not found"):
        ImageSet(f"folder:{tmp_path}:{tmp_path / 'nope'}")
    with pytest.raises(EvalError, match="no image in"):
        ImageSet(f"folder:{tmp_path}:{tmp_path}")
    with pytest.raises(EvalError, match="max_images must be >= 1"):
        ImageSet(shapes, max_images=0)
