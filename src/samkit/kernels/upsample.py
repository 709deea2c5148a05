"""Binary masks at full resolution: ``F.interpolate(low_res, size, mode="bilinear") > threshold``.

The plain expression every function here equals (up to where an upsampled logit lies within float
rounding of the threshold)::

    up = F.interpolate(low_res, size=(H, W), mode="bilinear", align_corners=False)
    masks = (up > threshold).float()

A click on a large photo returns three float32 0/1 masks; written as above, the upsampled logits go
to memory and a threshold pass reads them back. Here, on the CPU, bilinear resizing runs as two
banded matmul passes (each output row or column mixes two inputs) with each band thresholded while
in cache (:func:`upsampled_bands`); tiles of the output that lie wholly on one side of the threshold
are filled without being computed (:func:`flat_tiles`); and, with ``compile``, the vertical pass is
one ``torch.compile``'d loop (:func:`compiled_row_mixer`). Which one runs is the execution policy's
``upsample`` and ``compile`` (:mod:`samkit.policy`). The performance page of the docs has the
measurements. Tested against the plain expression in ``tests/kernels/test_upsample.py``.
"""

from __future__ import annotations

import functools
import threading
import warnings
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F

from ..policy import current

__all__ = [
    "bilinear_axis",
    "bilinear_matrix",
    "compile_error",
    "compiled_row_mixer",
    "flat_tiles",
    "upsample_threshold",
    "upsample_threshold_plain",
    "upsampled_bands",
    "warm_up_compiled",
]


def upsample_threshold_plain(
    low_res: torch.Tensor, size: tuple[int, int], threshold: float = 0.0
) -> torch.Tensor:
    """The plain expression: (B, M, h, w) logits -> (B, M, H, W) float32 0/1."""
    up = F.interpolate(
        low_res.float(), size=tuple(int(s) for s in size), mode="bilinear", align_corners=False
    )
    return torch.gt(up, threshold, out=torch.empty_like(up))


_BAND_ROWS = 64  # output rows per band: 3 masks x 64 rows x 2250 columns of float32 ~ 1.7 MB
_BAND_COLS = 256  # output columns per band of the first (horizontal) pass


@functools.lru_cache(maxsize=16)
def bilinear_axis(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Along one axis of ``F.interpolate(mode="bilinear", align_corners=False)``: for each of the
    n_out outputs, the two inputs it mixes (lo, hi: int64; hi == lo at the last input) and their
    float32 weights (w_lo, w_hi), as PyTorch's CPU kernel computes them: the source coordinate
    ``scale * (i + 0.5) - 0.5`` is one fused multiply-add, rounded once to float32 (emulated here in
    float64, where the product is exact). Cached, read-only."""
    scale = np.float32(n_in) / np.float32(n_out)
    half = np.arange(n_out, dtype=np.float32) + np.float32(0.5)
    src = (np.float64(scale) * half.astype(np.float64) - 0.5).astype(np.float32)
    src = np.maximum(src, np.float32(0))
    lo = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    w_hi = np.clip(src - lo.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float32)
    w_lo = (np.float32(1) - w_hi).astype(np.float32)
    hi = np.where(lo < n_in - 1, lo + 1, lo)
    return tuple(torch.from_numpy(np.ascontiguousarray(x)) for x in (lo, hi, w_lo, w_hi))


@functools.lru_cache(maxsize=8)
def bilinear_matrix(n_in: int, n_out: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(n_out, n_in) weights of F.interpolate(mode="bilinear", align_corners=False) along one axis,
    and the first and last input index each output reads. Cached (read-only): every click on an
    image needs the same two."""
    lo, hi, w_lo, w_hi = bilinear_axis(n_in, n_out)
    m = torch.zeros(n_out, n_in)
    rows = torch.arange(n_out)
    m.index_put_((rows, lo), w_lo, accumulate=True)
    m.index_put_((rows, hi), w_hi, accumulate=True)
    return m, lo, hi


def _upsample_columns(flat: torch.Tensor, ww: int) -> torch.Tensor:
    """The horizontal pass: (R, w) float32 rows -> (R, W), each output column the two-term bilinear
    mix of the input columns it lies between, as banded matmuls (a band of output columns reads only
    the few input columns under it)."""
    w = flat.shape[1]
    mx, x_lo, x_hi = bilinear_matrix(w, ww)
    mx_t = mx.t()  # (w, W)
    cols = flat.new_empty(flat.shape[0], ww)
    for c0 in range(0, ww, _BAND_COLS):
        c1 = min(ww, c0 + _BAND_COLS)
        k0, k1 = int(x_lo[c0]), int(x_hi[c1 - 1]) + 1
        torch.mm(flat[:, k0:k1], mx_t[k0:k1, c0:c1], out=cols[:, c0:c1])
    return cols


def upsampled_bands(
    low_res: torch.Tensor, size: tuple[int, int], rows: int = _BAND_ROWS, out: torch.Tensor | None = None
):
    """Yield ``(r0, r1, band)``: rows r0..r1 of ``F.interpolate(low_res, size, mode="bilinear",
    align_corners=False)`` for (N, h, w) float32 logits, band (N, r1 - r0, W), computed band by
    band (the band tensor is reused: consume it before the next one). With ``out`` (N, H, W), each
    band is written in place there instead, and ``band`` is that view of it (free to modify). Equal
    to F.interpolate up to float rounding (the same two-term sums, rounded in another order)."""
    n, h, w = low_res.shape
    hh, ww = int(size[0]), int(size[1])
    if n == 0 or hh == 0 or ww == 0:
        return
    my, y_lo, y_hi = bilinear_matrix(h, hh)
    cols = _upsample_columns(low_res.reshape(n * h, w), ww).view(n, h, ww)
    # vertical pass: each band of output rows mixes the few input rows it lies between
    band = cols.new_empty(n, min(rows, hh), ww) if out is None else None
    for r0 in range(0, hh, rows):
        r1 = min(hh, r0 + rows)
        k0, k1 = int(y_lo[r0]), int(y_hi[r1 - 1]) + 1
        if out is None:
            yield r0, r1, torch.matmul(my[r0:r1, k0:k1], cols[:, k0:k1], out=band[:, : r1 - r0])
            continue
        # one product per mask: out[i, r0:r1] is contiguous, the (N, rows, W) slice across masks is not
        for i in range(n):
            torch.mm(my[r0:r1, k0:k1], cols[i, k0:k1], out=out[i, r0:r1])
        yield r0, r1, out[:, r0:r1]


def upsample_threshold(
    low_res: torch.Tensor, size: tuple[int, int], threshold: float = 0.0, compiled: bool = False
) -> torch.Tensor:
    """``F.interpolate(low_res, size, mode="bilinear", align_corners=False) > threshold`` as float32
    0/1 (B, M, H, W), from (B, M, h, w) float32 logits, without materializing the upsampled logits.
    Eager, tiles of the output whose logits all lie on one side of the threshold are filled without
    being computed (:func:`_threshold_by_tiles`); masks with an edge in most tiles are computed band
    by band (:func:`upsampled_bands`). ``compiled``: do the vertical pass with
    :func:`compiled_row_mixer` instead (same values; its first call in a process compiles it; where
    compiling fails, this warns once and stays on the eager path).

    Equal to the two-step computation except where an upsampled logit lies within float rounding of
    the threshold. Non-finite logits and non-CPU tensors take the two-step path."""
    b, m, h, w = low_res.shape
    hh, ww = int(size[0]), int(size[1])
    # the policy's "interpolate" (GPUs have fast interpolation kernels of their own); and non-finite
    # logits, where a matmul would turn -inf x 0 into NaN
    plain = current(low_res.device).upsample == "interpolate" or low_res.device.type != "cpu"
    if plain or low_res.dtype != torch.float32 or not bool(low_res.isfinite().all()):
        return upsample_threshold_plain(low_res, (hh, ww), threshold)
    n = b * m
    mixer = compiled_row_mixer() if compiled and n and hh and ww else None
    if mixer is None and n and hh and ww:
        tiled = _threshold_by_tiles(low_res.reshape(n, h, w), hh, ww, threshold)
        if tiled is not None:
            return tiled.view(b, m, hh, ww)
    if mixer is not None:
        # every input made under inference mode, as in the predictors: tensors of the other kind
        # would fail the compiled code's guards and compile it a second time
        # (and called under it: a change of grad mode would compile another variant too)
        with torch.inference_mode():
            cols = _upsample_columns(low_res.reshape(n * h, w), ww)  # (N*h, W)
            y_lo, y_hi, w_lo, w_hi = bilinear_axis(h, hh)
            # one flat list of output rows for all masks: row (i, r) mixes rows i*h + lo[r], i*h + hi[r]
            base = torch.arange(n).mul_(h).unsqueeze(1)
            lo, hi = (base + y_lo).reshape(-1), (base + y_hi).reshape(-1)
            try:
                out = mixer(cols, lo, hi, w_lo.repeat(n), w_hi.repeat(n), torch.tensor(float(threshold)))
                return out.view(b, m, hh, ww)
            except Exception as e:  # no C++ compiler, or an inductor failure: stay eager from now on
                _compile_failed(e)
    out = low_res.new_empty(b, m, hh, ww, dtype=torch.float32)
    # each band of logits is written where its 0/1 values go and thresholded there while in cache:
    # no separate band buffer to copy from
    for _, _, band in upsampled_bands(low_res.reshape(n, h, w), (hh, ww), out=out.view(n, hh, ww)):
        band.gt_(threshold)
    return out


# --- skipping the flat parts of a mask ----------------------------------------------------------
#
# Most of a mask is far from its edge. Each output pixel is a convex combination (non-negative
# weights summing to 1) of the few logits under it, so where all the logits under a whole tile of
# output are above the threshold (by more than float rounding could move them), every pixel of the
# tile is 1 without computing it, and 0 where all are below. Only the tiles the edge crosses are
# upsampled, each as two tiny matmuls; the rest is one broadcast copy. Masks with edges everywhere
# (noise) take the banded path above; the compiled banded path stays the faster one where compiling
# is on (see the performance page).

_TILE_ROWS = 64
_TILE_COLS = 128
# above this fraction of edge tiles the eager banded path is the faster one (an edge tile costs its
# two products and a threshold; the banded path costs the same whatever the mask holds)
_MAX_EDGE_TILES = 0.4


class _TileAxis(NamedTuple):
    """One axis of the output cut into tiles: tile t's outputs ``out[t]`` (a slice) read the inputs
    ``src[t]`` (a slice); ``index`` (T, K) int64 lists each tile's inputs, padded by repeating the
    last; ``matrix`` (outputs, inputs) float32 numpy holds the bilinear weights (read-only)."""

    out: list[slice]
    src: list[slice]
    index: torch.Tensor
    matrix: np.ndarray
    matrix_t: np.ndarray


@functools.lru_cache(maxsize=8)
def _tile_axis(n_in: int, n_out: int, size: int) -> _TileAxis:
    m, lo, hi = bilinear_matrix(n_in, n_out)
    starts = torch.arange(0, n_out, size)
    ends = torch.clamp(starts + size, max=n_out)
    k0, k1 = lo[starts], hi[ends - 1] + 1  # each output reads lo..hi, both non-decreasing
    index = torch.minimum(k0[:, None] + torch.arange(int((k1 - k0).max())), (k1 - 1)[:, None])
    out = [slice(s0, s1) for s0, s1 in zip(starts.tolist(), ends.tolist())]
    src = [slice(a0, a1) for a0, a1 in zip(k0.tolist(), k1.tolist())]
    matrix = m.numpy()
    matrix_t = np.ascontiguousarray(matrix.T)
    matrix.flags.writeable = matrix_t.flags.writeable = False  # shared, as the cached tensor is
    return _TileAxis(out, src, index, matrix, matrix_t)


def flat_tiles(
    logits: torch.Tensor, hh: int, ww: int, threshold: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Which tiles of the (H, W) upsampling of the (N, h, w) finite logits are flat: ``ones`` (all
    logits under the tile above the threshold) and ``edge`` (neither all above nor all below), two
    (N, tile rows, tile columns) bool tensors."""
    rows, cols = _tile_axis(logits.shape[1], hh, _TILE_ROWS), _tile_axis(logits.shape[2], ww, _TILE_COLS)
    lo_r, hi_r = torch.aminmax(logits[:, rows.index], dim=2)
    lo_t, hi_t = lo_r[:, :, cols.index].amin(3), hi_r[:, :, cols.index].amax(3)
    # two rounded two-term sums move a value by a few float32 ulps of the largest magnitude; this
    # margin is ~100x that, so a tile called flat is flat in any rounding order
    margin = max(float(logits.abs().max()), abs(threshold)) * 2.0**-14
    ones = lo_t > threshold + margin
    return ones, ~(ones | (hi_t < threshold - margin))


def _threshold_by_tiles(logits: torch.Tensor, hh: int, ww: int, threshold: float) -> torch.Tensor | None:
    """``upsample_threshold`` for (N, h, w) finite float32 CPU logits -> (N, H, W) float32 0/1,
    computing only the tiles an edge crosses; ``None`` when so many do that the banded path is
    faster."""
    n, h, w = logits.shape
    rows, cols = _tile_axis(h, hh, _TILE_ROWS), _tile_axis(w, ww, _TILE_COLS)
    ones, edge = flat_tiles(logits, hh, ww, threshold)
    if int(edge.sum()) > edge.numel() * _MAX_EDGE_TILES:
        return None
    # flat tiles: each band of tile rows is one row of 0/1 repeated, written with one broadcast copy
    out = logits.new_empty(n, hh, ww)
    per_col = ones.to(torch.float32).repeat_interleave(_TILE_COLS, dim=2)[:, :, :ww]  # (N, tile rows, W)
    full = hh // _TILE_ROWS
    if full:
        out[:, : full * _TILE_ROWS].view(n, full, _TILE_ROWS, ww).copy_(
            per_col[:, :full, None].expand(n, full, _TILE_ROWS, ww)
        )
    if hh > full * _TILE_ROWS:
        out[:, full * _TILE_ROWS :].copy_(per_col[:, full:].expand(n, hh - full * _TILE_ROWS, ww))
    # edge tiles, overwritten: the horizontal then the vertical pass on the tile's own inputs, in
    # numpy (a tile is a few microseconds of work, under torch's per-call overhead)
    src, dst, cols_t = logits.detach().numpy(), out.numpy(), cols.matrix_t
    for i, ty, tx in edge.nonzero().tolist():
        ro, rs, co, cs = rows.out[ty], rows.src[ty], cols.out[tx], cols.src[tx]
        np.greater(rows.matrix[ro, rs] @ (src[i, rs, cs] @ cols_t[cs, co]), threshold, out=dst[i, ro, co])
    return out


# --- the compiled vertical pass (opt-in: load_model(..., compile=True)) -------------------------
#
# The eager vertical pass above is ~70 matmuls of (64 x 13) @ (13 x W) -- too short a K to run near
# the CPU's peak -- and a threshold pass. One generated loop that reads the two input rows of each
# output row, mixes them, compares and stores the 0/1 floats once is faster (see the performance
# page). torch.compile generates it; the first call in a process compiles it (a few seconds, and a
# C++ compiler), after which any size reuses it (the sizes are symbolic).


def _mix_rows_threshold(
    rows: torch.Tensor,
    lo: torch.Tensor,
    hi: torch.Tensor,
    w_lo: torch.Tensor,
    w_hi: torch.Tensor,
    threshold: torch.Tensor,
) -> torch.Tensor:
    """(R, W) float32 rows -> (R', W) float32 0/1: output row i is
    ``rows[lo[i]] * w_lo[i] + rows[hi[i]] * w_hi[i] > threshold``."""
    mixed = rows[lo] * w_lo[:, None] + rows[hi] * w_hi[:, None]
    return (mixed > threshold).to(torch.float32)


_compiled_state: dict[str, object] = {"fn": None, "error": None}
_compiled_lock = threading.Lock()


def compiled_row_mixer():
    """The torch.compile'd row mixer of :func:`upsample_threshold` (``None`` once compiling has
    failed in this process: see :func:`compile_error`), for inputs made and calls made under
    inference mode."""
    with _compiled_lock:
        if _compiled_state["error"] is not None:
            return None
        if _compiled_state["fn"] is None:
            _compiled_state["fn"] = torch.compile(_mix_rows_threshold, dynamic=True)
        return _compiled_state["fn"]


def compile_error() -> str | None:
    """Why the compiled postprocessing is off in this process (``None`` while it is on)."""
    return _compiled_state["error"]


def _compile_failed(e: Exception) -> None:
    reason = str(e).strip().splitlines()
    reason = f"{type(e).__name__}: {reason[0] if reason else ''}"
    with _compiled_lock:
        _compiled_state["error"] = reason
    warnings.warn(
        f"torch.compile of the mask upsampling failed ({reason[:300]}); using the eager path "
        "(same masks, a few ms slower per large click). A C++ compiler (g++) is needed.",
        RuntimeWarning,
        stacklevel=3,
    )


def warm_up_compiled() -> bool:
    """Compile the row mixer now (a server calls it at start-up, so that no user's first click waits
    seconds for it). Returns whether the compiled path works. The warm-up sizes are all distinct, so
    that the compiled code assumes no two sizes equal and no later size compiles it again."""
    low_res = torch.randn(1, 2, 8, 9, generator=torch.Generator().manual_seed(0))
    upsample_threshold(low_res, (20, 30), 0.0, compiled=True)
    return compile_error() is None
