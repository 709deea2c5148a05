"""Mask statistics shared by the server and the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from samkit.visualize import mask_stats


@pytest.mark.parametrize("dtype", [bool, np.float32, np.uint8])
def test_mask_stats_area_and_bbox(dtype):
    m = np.zeros((30, 50), bool)
    m[4:9, 10:21] = True
    m[20, 45] = True
    assert mask_stats(m.astype(dtype)) == {"area": 5 * 11 + 1, "bbox": [10, 4, 36, 17]}
    assert mask_stats(np.zeros((3, 4), dtype)) == {"area": 0, "bbox": [0, 0, 0, 0]}
