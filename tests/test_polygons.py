"""Masks as polygons: outer boundaries through boundary pixels' centres, simplified, largest first."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from samkit.polygons import mask_to_polygons, polygon_area


def raster(polys, h, w) -> np.ndarray:
    flat = [sum(([x + 0.5, y + 0.5] for x, y in p), []) for p in polys]
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, h, w))).astype(bool)


def test_a_rectangle_is_its_four_corner_pixels():
    m = np.zeros((40, 50), bool)
    m[10:20, 5:30] = True
    (poly,) = mask_to_polygons(m)
    assert sorted(map(tuple, poly)) == sorted([(5.0, 10.0), (29.0, 10.0), (29.0, 19.0), (5.0, 19.0)])
    assert polygon_area(poly) == 24 * 9  # centre to centre


def test_regions_holes_and_specks():
    yy, xx = np.mgrid[:80, :100]
    disc = (yy - 40) ** 2 + (xx - 30) ** 2 < 15**2
    square = (yy >= 10) & (yy < 20) & (xx >= 70) & (xx < 80)
    m = disc | square
    m[38:43, 28:33] = False  # a hole: only outer boundaries are given
    m[70, 90] = True  # a speck: too small for a polygon
    polys = mask_to_polygons(m, 0.0)
    assert len(polys) == 2 and polygon_area(polys[0]) > polygon_area(polys[1])  # largest first
    filled = disc | square
    r = raster(polys, 80, 100)
    assert (r & ~filled).sum() == 0  # never outside the regions
    assert r.sum() / filled.sum() > 0.9  # half a boundary pixel is lost all around
    # simplification keeps the shape with fewer points
    simple = mask_to_polygons(m, 0.01)
    assert len(simple[0]) < len(polys[0]) / 2
    assert (raster(simple, 80, 100) ^ r).sum() / r.sum() < 0.05


@pytest.mark.parametrize("shape", [(0, 0), (5, 5)])
def test_empty_masks_have_no_polygons(shape):
    assert mask_to_polygons(np.zeros(shape, bool)) == []


def test_a_region_touching_the_border_and_a_thin_bridge():
    m = np.zeros((10, 10), bool)
    m[0:4, 0:4] = True
    m[4:8, 4:8] = True  # joined to the first by one diagonal step (8-connected: one region)
    (poly,) = mask_to_polygons(m, 0.0)
    assert {(0.0, 0.0), (7.0, 7.0)} <= set(map(tuple, poly))
    with pytest.raises(ValueError, match="2-D"):
        mask_to_polygons(np.zeros((2, 2, 2), bool))
