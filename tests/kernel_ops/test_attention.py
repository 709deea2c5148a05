"""kernels.attention: attention by matmuls stays within bf16 rounding of the fused kernel, and the
policy's ``attention`` decides where it runs (forced here, so it runs on any CPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from samkit import policy
from samkit.kernels import attention as K


@pytest.mark.parametrize("chunk_bytes", [1 << 30, 4096])
@pytest.mark.parametrize(
    "q_shape,k_shape", [((2, 3, 40, 16), (2, 3, 40, 16)), ((4, 2, 10, 16), (4, 2, 40, 16))]
)
def test_attention_by_matmuls_matches_the_fused_kernel(monkeypatch, chunk_bytes, q_shape, k_shape):
    """In bfloat16 (whole or in query chunks) within bf16 rounding of F.scaled_dot_product_attention;
    float32 is the fused kernel's result exactly; with autograd on, gradients flow; empty inputs work."""
    monkeypatch.setattr(K, "_SCORE_CHUNK_BYTES", chunk_bytes)
    torch.manual_seed(0)
    q, k, v = torch.randn(q_shape), torch.randn(k_shape), torch.randn(k_shape)
    want = F.scaled_dot_product_attention(q, k, v)
    calls = []
    real = K.attention_by_matmuls
    monkeypatch.setattr(K, "attention_by_matmuls", lambda *a: calls.append(1) or real(*a))
    with policy.override(attention="matmuls"):
        with torch.inference_mode():
            assert torch.equal(K.attention(q, k, v), want)
            assert calls == []  # float32: the fused call
            # a non-contiguous query view, as the trunk passes (B, N, H, d) transposed
            qb = q.transpose(1, 2).contiguous().transpose(1, 2).to(torch.bfloat16)
            got = K.attention(qb, k.to(torch.bfloat16), v.to(torch.bfloat16))
        assert calls == [1]
        assert got.dtype == torch.bfloat16 and got.shape == want.shape
        assert (got.float() - want).abs().max() < 0.05
        qg = q.to(torch.bfloat16).requires_grad_()
        K.attention(qg, k.to(torch.bfloat16), v.to(torch.bfloat16)).float().sum().backward()
        assert qg.grad is not None and torch.isfinite(qg.grad).all() and calls == [1]
        with torch.inference_mode():
            empty = K.attention(qb[..., :0, :], k.to(torch.bfloat16), v.to(torch.bfloat16))
        assert empty.shape == (*q_shape[:2], 0, q_shape[-1])


def test_fused_policy_never_takes_the_matmuls():
    torch.manual_seed(0)
    q = torch.randn(1, 2, 8, 16).to(torch.bfloat16)
    with policy.override(attention="fused"), torch.inference_mode():
        got = K.attention(q, q, q)
    assert torch.equal(got, F.scaled_dot_product_attention(q, q, q))
