"""Scaled dot-product attention, as bfloat16 matmuls and a softmax on CPUs where that is faster.

The plain expression, q (..., Nq, d), k and v (..., Nk, d) -> (..., Nq, d)::

    out = F.scaled_dot_product_attention(q, k, v)

On CPUs with AVX512-BF16 but no AMX, PyTorch's fused bfloat16 CPU kernel runs far below the CPU's
matmul rate, so the fast path computes it as two bf16 matmuls and a softmax over chunks of queries
(a chunk's scores stay in cache between the three steps). The scores are rounded to bf16 before the
softmax, where the fused kernel keeps them in float32: a fast-path difference within its tolerance.
The execution policy's ``attention`` decides (:mod:`samkit.policy`); float32 (which must keep the
reference's numbers), autograd and other devices always take the fused call. Tested in
``tests/kernels/test_attention.py``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..policy import current

__all__ = ["attention", "attention_by_matmuls"]

# bytes of bfloat16 scores computed per query chunk: a chunk's scores stay in the caches between the
# two matmuls and the softmax
_SCORE_CHUNK_BYTES = 16 << 20


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    dropout_p: float = 0.0,
    key_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)``, or :func:`attention_by_matmuls`
    for bfloat16 CPU inference where the policy says ``attention="matmuls"``. ``key_mask`` (B, Nk)
    bool: only the keys where it is True are attended (a fixed-size memory bank's valid slots); the
    result equals attention over those keys alone, up to rounding."""
    if key_mask is not None:
        mask = key_mask[:, None, None, :]  # (B, 1, 1, Nk): every head and query alike
        if q.dtype == torch.bfloat16 and q.device.type == "cpu" and current("cpu").attention == "matmuls":
            return attention_by_matmuls(q, k, v, mask)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    if dropout_p > 0.0:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
    if (
        q.dtype == torch.bfloat16
        and q.device.type == "cpu"
        and not torch.is_grad_enabled()
        and q.numel() > 0
        and k.numel() > 0
        and current("cpu").attention == "matmuls"
    ):
        return attention_by_matmuls(q, k, v)
    return F.scaled_dot_product_attention(q, k, v)


def attention_by_matmuls(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v as matmuls, in chunks of queries of about 16 MiB of scores; keys
    where the boolean ``mask`` (broadcast to the scores) is False are left out."""
    bias = (
        None
        if mask is None
        else torch.zeros(mask.shape, dtype=q.dtype, device=q.device).masked_fill(~mask, -float("inf"))
    )
    q = q * q.shape[-1] ** -0.5
    kt = k.transpose(-2, -1)
    rows = q.shape[-2]
    per_row = 2 * k.shape[-2] * math.prod(q.shape[:-2])  # bytes of one query row's bf16 scores
    chunk = max(16, _SCORE_CHUNK_BYTES // per_row)
    if chunk >= rows:
        scores = torch.matmul(q, kt)
        return torch.matmul((scores if bias is None else scores + bias).softmax(-1), v)
    out = q.new_empty(*q.shape[:-1], v.shape[-1])
    for s in range(0, rows, chunk):
        scores = torch.matmul(q[..., s : s + chunk, :], kt)
        if bias is not None:
            scores = scores + bias
        out[..., s : s + chunk, :] = torch.matmul(scores.softmax(-1), v)
    return out
