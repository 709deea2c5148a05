"""The automatic mask generator's stability scores and boxes at full resolution, by cells.

The plain expression it equals, for (N, h, w) float32 logits scored at a crop's (H, W)::

    up = F.interpolate(low[:, None], (H, W), mode="bilinear", align_corners=False)[:, 0]
    stability = stability_score(up, mask_threshold, offset)     # samkit.modeling.common
    boxes = batched_mask_to_box(up > mask_threshold)             # samkit.amg

Scoring a candidate needs two pixel counts and a box of its logits bilinearly upsampled to the
crop's full size (a million pixels for a 1200x800 crop). Each upsampled pixel is a convex combination
of the 2x2 low-res logits around it (a "cell" of the low-res grid), so in a cell whose four corners
lie above a threshold every pixel does too, and below likewise; only the cells a threshold crosses --
the mask's outline, a few percent of them -- are upsampled pixel by pixel, with the arithmetic of
PyTorch's CPU kernel, and the rest is counted by cell areas. The execution policy's ``amg_cells``
says where it runs (:mod:`samkit.policy`). Tested in ``tests/kernels/test_cells.py``.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

from .upsample import bilinear_axis

__all__ = ["upsampled_stability_and_boxes"]

_CELL_TOL = 2e-6  # relative: a 2x2 interpolation is a few float32 roundings (2**-24) off exact
_MAX_EVAL = 2**21  # pixels of crossed cells upsampled at a time (8 MiB per float32 tensor)


@functools.lru_cache(maxsize=16)
def _cells(n_in: int, n_out: int) -> tuple[torch.Tensor, ...]:
    """Along one axis: each cell's first output and output count (int32; outputs with the same low
    input are contiguous), and every output's weights, with a NaN entry at index n_out for padding."""
    lo, _, w_lo, w_hi = bilinear_axis(n_in, n_out)
    count = torch.bincount(lo, minlength=n_in)
    nan = torch.tensor([float("nan")])
    start = (torch.cumsum(count, 0) - count).int()
    return start, count.int(), torch.cat([w_lo, nan]), torch.cat([w_hi, nan])


def upsampled_stability_and_boxes(
    low: torch.Tensor, size: tuple[int, int], mask_threshold: float, offset: float, max_boundary: float = 0.3
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``stability_score`` and ``batched_mask_to_box(... > mask_threshold)`` of
    ``F.interpolate(low[:, None], size, mode="bilinear", align_corners=False)``, computed without
    upsampling: (N,) float32 and (N, 4) int64 for (N, h, w) float32 CPU logits.

    Equal to the direct computation: the pixels that are upsampled are upsampled with the float32
    operations of PyTorch's CPU kernel (fused multiply-adds, as ``addcmul``). Returns None when more
    than ``max_boundary`` of the cells would need upsampling (noise-like logits), where the direct
    computation is cheaper.
    """
    # (reductions over int32, uint8 and float32: PyTorch reduces int64 and bool over short or outer
    # axes 10-200x slower than these)
    n, h, w = low.shape
    hh, ww = int(size[0]), int(size[1])
    tol = _CELL_TOL * float(low.abs().amax()) if low.numel() else 0.0
    if not math.isfinite(tol):  # -inf x a zero weight is NaN: non-finite logits are upsampled
        return None
    # noise-like logits cross a threshold between most neighbours: give up before the real work
    side = low > mask_threshold
    if int(torch.count_nonzero(side[:, :, 1:] != side[:, :, :-1])) > max_boundary / 3 * side.numel():
        return None
    r_start, r_count, wy0, wy1 = _cells(h, hh)
    c_start, c_count, wx0, wx1 = _cells(w, ww)
    # corners of cell (i, j): padded (i, j), (i, j+1), (i+1, j), (i+1, j+1), clamped at the edges
    pad = F.pad(low[:, None], (0, 1, 0, 1), mode="replicate")[:, 0]  # (N, h+1, w+1)
    pair_min = torch.minimum(pad[:, :, :-1], pad[:, :, 1:])
    pair_max = torch.maximum(pad[:, :, :-1], pad[:, :, 1:])
    cmin = torch.minimum(pair_min[:, :-1], pair_min[:, 1:])  # (N, h, w)
    cmax = torch.maximum(pair_max[:, :-1], pair_max[:, 1:])
    # cells with values on both sides of, or near, any of the thresholds: the band around the mask's
    # outline (a cell inside that band but between two thresholds is evaluated needlessly, but right)
    thresholds = (mask_threshold + offset, mask_threshold, mask_threshold - offset)
    t_hi, t_lo = max(thresholds), min(thresholds)
    crossed = (cmin <= t_hi + tol) & (cmax > t_lo - tol)
    live = (r_count > 0)[:, None] & (c_count > 0)[None, :]
    if not bool(live.all()):  # downsampling: cells no output falls in
        crossed &= live
    cells = crossed.nonzero()  # (K, 3): mask, i, j -- in mask order
    if len(cells) > max_boundary * n * int(live.sum()):
        return None

    # every other cell lies above all thresholds or below all: its pixels count for all three, or
    # for none; counted as (cells x columns per cell) per row of cells, then x rows per cell
    above = (cmin > t_hi + tol).float()  # (N, h, w) 0/1, never a crossed cell
    per_row = above @ c_count.float()  # (N, h), exact integers
    count = (per_row.double() @ r_count.double()).long()
    counts = [count, count.clone(), count.clone()]
    rows_any, cols_any = per_row > 0, (r_count.float() @ above) > 0  # (N, h), (N, w)
    big = torch.iinfo(torch.int32).max
    top = torch.where(rows_any, r_start, big).amin(1)
    bottom = torch.where(rows_any, r_start + r_count - 1, -1).amax(1)
    left = torch.where(cols_any, c_start, big).amin(1)
    right_ = torch.where(cols_any, c_start + c_count - 1, -1).amax(1)

    # crossed cells: upsample their pixels, laid out (R, C, K) for the largest cell (R x C) so that
    # every operation runs along the K cells; padding pixels get NaN weights and compare False
    rr, cc = int(r_count.max()), int(c_count.max())
    ar, ac = torch.arange(rr, dtype=torch.int32)[:, None], torch.arange(cc, dtype=torch.int32)[:, None]
    step = max(1, _MAX_EVAL // (rr * cc))
    for k0 in range(0, len(cells), step):
        m, i, j = cells[k0 : k0 + step].unbind(1)
        oy = torch.where(ar < r_count[i], r_start[i] + ar, hh)  # (R, K)
        ox = torch.where(ac < c_count[j], c_start[j] + ac, ww)  # (C, K)
        x0, x1 = wx0[ox], wx1[ox]
        # PyTorch's CPU kernel: each input row fma(a, wx0, b * wx1), then fma(top, wy0, bottom * wy1)
        t0 = torch.addcmul(pad[m, i, j + 1] * x1, pad[m, i, j], x0)
        t1 = torch.addcmul(pad[m, i + 1, j + 1] * x1, pad[m, i + 1, j], x0)
        v = torch.addcmul(t1 * wy1[oy][:, None], t0, wy0[oy][:, None])  # (R, C, K)
        flags = torch.empty_like(v)
        for k, t in enumerate(thresholds):
            counts[k].index_add_(0, m, torch.gt(v, t, out=flags).sum((0, 1)).long())
        hit = torch.gt(v, mask_threshold, out=flags).to(torch.uint8)
        rows_hit, cols_hit = hit.amax(1).bool(), hit.amax(0).bool()  # (R, K), (C, K)
        top.scatter_reduce_(0, m, torch.where(rows_hit, oy, big).amin(0), "amin")
        bottom.scatter_reduce_(0, m, torch.where(rows_hit, oy, -1).amax(0), "amax")
        left.scatter_reduce_(0, m, torch.where(cols_hit, ox, big).amin(0), "amin")
        right_.scatter_reduce_(0, m, torch.where(cols_hit, ox, -1).amax(0), "amax")

    stability = counts[0].to(torch.int32) / counts[2].to(torch.int32)
    boxes = torch.stack([left, top, right_, bottom], 1).long()
    return stability, boxes * (bottom >= 0)[:, None]
