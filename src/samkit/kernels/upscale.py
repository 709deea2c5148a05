"""The mask decoder's upscaling and mask filters, as token-order matmuls.

The plain expression (the reference's, channels first) every function here equals up to float
rounding, for image tokens ``src`` (B, h*w, C), filters ``hyper_in`` (B, M, C/8) and the high-res
features ``feat_s0`` (., C/8, 4h, 4w), ``feat_s1`` (., C/4, 2h, 2w)::

    dc1, ln1, act1, dc2, act2 = upscaling
    x = src.transpose(1, 2).reshape(B, C, h, w)
    x = act1(ln1(dc1(x) + feat_s1))
    x = act2(dc2(x) + feat_s0)
    masks = (hyper_in @ x.flatten(2)).view(B, M, 4h, 4w)

A 2x2 stride-2 transposed convolution is a matmul per input pixel, so both convolutions, the norm
and the filters become plain matmuls and row-wise ops on whole channel vectors. On the CPU
(:func:`upscale_tiled`) a few grid rows of one prompt go through the chain while in cache; off the CPU
(:func:`upscale_untiled`) all prompts and rows go at once, since every operation is a kernel launch
there. The execution policy's ``upscale`` picks one (:mod:`samkit.policy`). Tested in
``tests/kernels/test_upscale.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["prepare_skips", "token_order_weights", "upscale_plain", "upscale_tiled", "upscale_untiled"]


def upscale_plain(
    upscaling: nn.Sequential,
    src: torch.Tensor,
    hyper_in: torch.Tensor,
    hw: tuple[int, int],
    high_res_features: list[torch.Tensor],
) -> torch.Tensor:
    """The plain expression above: masks (B, M, 4h, 4w)."""
    b, m = hyper_in.shape[:2]
    h, w = hw
    dc1, ln1, act1, dc2, act2 = upscaling
    feat_s0, feat_s1 = high_res_features
    x = src.transpose(1, 2).reshape(b, -1, h, w)
    x = act1(ln1(dc1(x) + feat_s1))
    x = act2(dc2(x) + feat_s0)
    return (hyper_in @ x.flatten(2)).view(b, m, 4 * h, 4 * w)


def prepare_skips(
    upscaling: nn.Sequential, high_res_features: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The high-res features (1, C/8, 4h, 4w) and (1, C/4, 2h, 2w), rearranged for the token-order
    upscaling with the transposed convolutions' biases folded in.

    s1: rows = grid cells (i, j), columns (a, c, channel) for pixel (2i + a, 2j + c); s0: rows =
    2h x 2w pixels in image order, columns (e, f, channel) for pixel (2p + e, 2q + f).
    """
    dc1, _, _, dc2, _ = upscaling
    feat_s0, feat_s1 = high_res_features
    c1, c2 = dc1.out_channels, dc2.out_channels
    h, w = feat_s1.shape[-2] // 2, feat_s1.shape[-1] // 2
    s1 = feat_s1[0].reshape(c1, h, 2, w, 2).permute(1, 3, 2, 4, 0).reshape(h * w, 4 * c1)
    s0 = feat_s0[0].reshape(c2, 2 * h, 2, 2 * w, 2).permute(1, 3, 2, 4, 0).reshape(4 * h * w, 4 * c2)
    return s1 + dc1.bias.repeat(4), s0 + dc2.bias.repeat(4)


# Rows of the h x w grid upscaled at a time: the working set of one prompt's tile (about 3 MiB at
# 16 rows) stays in cache through the matmul -> norm -> GELU -> matmul -> GELU chain, where whole
# (B, C/8, 4h, 4w) maps would go through memory after every step.
_UPSCALE_ROWS = 16


def token_order_weights(
    upscaling: nn.Sequential, skips: tuple[torch.Tensor, torch.Tensor], dtype: torch.dtype
):
    """The upscaling's weights for token-order matmuls, in ``dtype``: the two transposed convolutions'
    (C_in, C_out, 2, 2) as (C_in, 4 * C_out), columns ordered (sub-row, sub-col, channel); the skips;
    and the channel LayerNorm as a function of (N, C) rows."""
    dc1, ln1, _, dc2, _ = upscaling
    c1, c2 = dc1.out_channels, dc2.out_channels
    w1 = dc1.weight.permute(0, 2, 3, 1).reshape(dc1.in_channels, 4 * c1).to(dtype)
    w2 = dc2.weight.permute(0, 2, 3, 1).reshape(c1, 4 * c2).to(dtype)
    s1, s0 = (x.to(dtype) for x in skips)
    ln_w, ln_b = ln1.weight.to(dtype), ln1.bias.to(dtype)
    return w1, w2, s1, s0, lambda y: F.layer_norm(y, (c1,), ln_w, ln_b, ln1.eps)


def upscale_tiled(
    upscaling: nn.Sequential,
    src: torch.Tensor,
    hyper_in: torch.Tensor,
    hw: tuple[int, int],
    skips: tuple[torch.Tensor, torch.Tensor],
    out: torch.Tensor,
) -> torch.Tensor:
    """The decoder's upscaling (two 2x2 stride-2 transposed convolutions with the high-res skips, a
    channel LayerNorm and GELUs) and the per-mask filters, computed in token order.

    A 2x2 stride-2 transposed convolution is a matmul per input pixel (C_in -> 4 * C_out columns,
    one block per output sub-pixel), so both convolutions, the norm and the filters are plain
    matmuls and row-wise ops on a contiguous tile of a few grid rows, and a tile is put in image
    order between them by moving whole channel vectors. ``skips``: :func:`prepare_skips`.
    Writes masks (B, M, 4h, 4w) into ``out``. Equal to the channels-first computation up to float
    rounding.
    """
    b, m = hyper_in.shape[:2]
    h, w = hw
    w1, w2, s1, s0, ln = token_order_weights(upscaling, skips, src.dtype)
    c1, c2 = w2.shape[0], w2.shape[1] // 4
    filters = hyper_in.to(src.dtype)  # (B, M, C/8)

    for r0 in range(0, h, _UPSCALE_ROWS):
        r1 = min(h, r0 + _UPSCALE_ROWS)
        rows = r1 - r0
        t0, t1 = r0 * w, r1 * w
        for i in range(b):
            y = torch.addmm(s1[t0:t1], src[i, t0:t1], w1).view(rows, w, 2, 2, c1)
            y = y.transpose(1, 2).reshape(-1, c1)  # rows: 2h x 2w pixels in image order
            y = F.gelu(ln(y))
            z = F.gelu(torch.addmm(s0[4 * t0 : 4 * t1], y, w2)).view(2 * rows, 2 * w, 2, 2, c2)
            z = z.transpose(1, 2).reshape(-1, c2)  # rows: 4h x 4w pixels in image order
            torch.mm(filters[i], z.t(), out=out[i, :, 4 * r0 : 4 * r1].view(m, -1))
    return out


def upscale_untiled(
    upscaling: nn.Sequential,
    src: torch.Tensor,
    hyper_in: torch.Tensor,
    hw: tuple[int, int],
    skips: tuple[torch.Tensor, torch.Tensor],
    out: torch.Tensor,
) -> torch.Tensor:
    """:func:`upscale_tiled` for all prompts and grid rows at once: the same matmuls and row-wise
    ops on whole (B, tokens, channels) tensors, for devices where each operation is a kernel launch
    and nothing is gained by staying in a cache (the tiled version makes hundreds of operations per
    prompt; this one a fixed few). Writes masks (B, M, 4h, 4w) into ``out``."""
    b, m = hyper_in.shape[:2]
    h, w = hw
    w1, w2, s1, s0, ln = token_order_weights(upscaling, skips, src.dtype)
    c1, c2 = w2.shape[0], w2.shape[1] // 4
    # (the skips are shared by all prompts: broadcast, not copied)
    y = torch.baddbmm(s1.expand(b, -1, -1), src.reshape(b, h * w, -1), w1.expand(b, -1, -1))
    y = y.view(b, h, w, 2, 2, c1).transpose(2, 3).reshape(b, -1, c1)  # 2h x 2w pixels in image order
    y = F.gelu(ln(y))
    z = F.gelu(torch.baddbmm(s0.expand(b, -1, -1), y, w2.expand(b, -1, -1))).view(b, 2 * h, 2 * w, 2, 2, c2)
    z = z.transpose(2, 3).reshape(b, -1, c2)  # rows: per prompt, 4h x 4w pixels in image order
    torch.bmm(hyper_in.to(src.dtype), z.transpose(1, 2), out=out.view(b, m, -1))
    return out
