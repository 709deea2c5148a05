"""Masks as polygons, for tools that draw shapes rather than masks (X-AnyLabeling, CVAT, LabelMe).

:func:`mask_to_polygons` gives the outer boundary of each 8-connected region of a mask, traced
through the centres of its boundary pixels (as OpenCV's ``findContours`` with ``RETR_EXTERNAL``
does), then simplified with Douglas-Peucker to within ``epsilon_factor`` times the boundary's
length. No OpenCV needed.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["mask_to_polygons", "polygon_area"]

# the 8 neighbours (dy, dx) clockwise on screen (y down), starting west
_DIRS = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))
_INDEX = {d: i for i, d in enumerate(_DIRS)}


def _step(region: np.ndarray, cur: tuple[int, int], back: int) -> tuple[tuple[int, int] | None, int]:
    """The next boundary pixel clockwise from ``cur``, searching from the neighbour after ``back``;
    and the direction, seen from it, of the last background neighbour checked (where its search
    starts)."""
    for k in range(1, 9):
        d = (back + k) % 8
        ny, nx = cur[0] + _DIRS[d][0], cur[1] + _DIRS[d][1]
        if region[ny, nx]:
            py, px = cur[0] + _DIRS[(d - 1) % 8][0], cur[1] + _DIRS[(d - 1) % 8][1]
            return (ny, nx), _INDEX[(py - ny, px - nx)]
    return None, back


def _trace(region: np.ndarray) -> list[tuple[int, int]]:
    """Moore-neighbour tracing of the outer boundary of one 8-connected region (a boolean array with a
    one-pixel margin of False around it): boundary pixels (y, x) clockwise, stopping when the start
    pixel would be left the way it was left first (Jacob's rule)."""
    ys, xs = np.nonzero(region)
    start = (int(ys[0]), int(xs[0]))  # the top row's leftmost pixel: its west neighbour is outside
    second, back = _step(region, start, 0)
    if second is None:
        return [start]  # a single pixel
    contour, cur = [start], second
    for _ in range(4 * int(region.sum()) + 8):
        if cur == start and _step(region, cur, back)[0] == second:
            break
        contour.append(cur)
        cur, back = _step(region, cur, back)
    return contour


def _simplify(points: np.ndarray, epsilon: float) -> np.ndarray:
    """Douglas-Peucker of an open chain (N, 2): the points kept, ends included."""
    if len(points) < 3 or epsilon <= 0:
        return points
    keep = np.zeros(len(points), bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        p, q = points[a], points[b]
        seg = q - p
        rest = points[a + 1 : b] - p
        norm = np.hypot(*seg)
        if norm == 0:
            dist = np.hypot(rest[:, 0], rest[:, 1])
        else:
            dist = np.abs(seg[0] * rest[:, 1] - seg[1] * rest[:, 0]) / norm
        i = int(np.argmax(dist))
        if dist[i] > epsilon:
            m = a + 1 + i
            keep[m] = True
            stack += [(a, m), (m, b)]
    return points[keep]


def polygon_area(points) -> float:
    """Shoelace area of a closed polygon [[x, y], ...]."""
    p = np.asarray(points, float)
    return 0.5 * abs(float(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))))


def mask_to_polygons(mask: np.ndarray, epsilon_factor: float = 0.001) -> list[list[list[float]]]:
    """Polygons [[x, y], ...] (pixel centres, not closed) of the outer boundaries of ``mask``'s
    8-connected regions, largest region first. Regions too thin to make 3 points after simplification
    are left out."""
    m = np.asarray(mask, bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {m.shape}")
    if m.size == 0:
        return []
    labels, n = ndimage.label(m, structure=np.ones((3, 3), int))
    out = []
    for i, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        region = np.pad(labels[sl] == i, 1)
        chain = _trace(region)
        y0, x0 = sl[0].start - 1, sl[1].start - 1
        pts = np.array([(x + x0, y + y0) for y, x in chain], float)
        if len(pts) >= 3:
            closed = np.vstack([pts, pts[:1]])
            length = float(np.hypot(*np.diff(closed, axis=0).T).sum())
            # split the closed boundary at its start and at the point farthest from it
            far = int(np.argmax(np.hypot(*(pts - pts[0]).T)))
            first = _simplify(pts[: far + 1], epsilon_factor * length)
            second = _simplify(np.vstack([pts[far:], pts[:1]]), epsilon_factor * length)
            pts = np.vstack([first, second[1:-1]])
        if len(pts) >= 3:
            out.append((int((labels[sl] == i).sum()), pts.tolist()))
    out.sort(key=lambda t: -t[0])
    return [p for _, p in out]
