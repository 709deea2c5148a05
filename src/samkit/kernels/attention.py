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


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float = 0.0) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)``, or :func:`attention_by_matmuls`
    for bfloat16 CPU inference where the policy says ``attention="matmuls"``."""
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


def attention_by_matmuls(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) v as matmuls, in chunks of queries of about 16 MiB of scores."""
    q = q * q.shape[-1] ** -0.5
    kt = k.transpose(-2, -1)
    rows = q.shape[-2]
    per_row = 2 * k.shape[-2] * math.prod(q.shape[:-2])  # bytes of one query row's bf16 scores
    chunk = max(16, _SCORE_CHUNK_BYTES // per_row)
    if chunk >= rows:
        return torch.matmul(torch.matmul(q, kt).softmax(-1), v)
    out = q.new_empty(*q.shape[:-1], v.shape[-1])
    for s in range(0, rows, chunk):
        scores = torch.matmul(q[..., s : s + chunk, :], kt)
        out[..., s : s + chunk, :] = torch.matmul(scores.softmax(-1), v)
    return out
