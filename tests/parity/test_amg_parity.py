"""samkit's AutomaticMaskGenerator against the reference SAM2AutomaticMaskGenerator.

With filtering off (thresholds 0, NMS 1.0) every mask, score, stability score, box, point and crop
box must be equal; with thresholds, NMS and crop layers on, the same set of masks must survive.
The shared groceries photo is halved to keep the reference's full-resolution work short.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
from PIL import Image

import oracle
import samkit

pytestmark = pytest.mark.parity
oracle.setup()


@functools.lru_cache(maxsize=1)
def _models(variant):
    ckpt = oracle.checkpoint(variant)
    return oracle.build_reference(variant, ckpt), samkit.load_model(variant, checkpoint=ckpt, device="cpu")


@pytest.fixture(scope="module")
def photo(groceries):
    h, w = groceries.shape[:2]
    return np.asarray(Image.fromarray(groceries).resize((w // 2, h // 2), Image.Resampling.BILINEAR))


def run_both(variant, image, **kw):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    ref_model, our_model = _models(variant)
    ref = SAM2AutomaticMaskGenerator(ref_model, **kw).generate(image)
    ours = samkit.AutomaticMaskGenerator(our_model, **kw).generate(image)
    return ref, ours


def same(a, b):
    return a == b or (isinstance(a, float) and isinstance(b, float) and np.isnan(a) and np.isnan(b))


@pytest.mark.parametrize("variant", ["sam2-hiera-tiny", "sam2.1-hiera-tiny"])
def test_unfiltered_outputs_equal(variant, photo):
    kw = dict(
        points_per_side=6,
        pred_iou_thresh=0.0,
        stability_score_thresh=0.0,
        box_nms_thresh=1.0,
        stability_score_offset=0.05,
        output_mode="coco_rle",
    )
    ref, ours = run_both(variant, photo, **kw)
    assert len(ours) == len(ref) == 108
    for i, (r, o) in enumerate(zip(ref, ours)):
        assert r.keys() == o.keys()
        for k in r:
            assert same(r[k], o[k]), f"mask {i}: {k} differs: {str(r[k])[:60]} != {str(o[k])[:60]}"


@pytest.mark.parametrize("variant", ["sam2-hiera-tiny", "sam2.1-hiera-tiny"])
def test_filtered_with_crops_same_set(variant, photo):
    kw = dict(
        points_per_side=8,
        pred_iou_thresh=0.5,
        stability_score_thresh=0.2,
        stability_score_offset=0.05,
        box_nms_thresh=0.7,
        crop_n_layers=1,
        crop_n_points_downscale_factor=2,
        min_mask_region_area=20,
        output_mode="uncompressed_rle",
    )
    ref, ours = run_both(variant, photo, **kw)
    assert 0 < len(ref)
    key = lambda a: (tuple(a["point_coords"][0]), tuple(a["crop_box"]), a["predicted_iou"])  # noqa: E731
    assert sorted(map(key, ours)) == sorted(map(key, ref))
    assert ours == ref  # the same order and the same masks, too
