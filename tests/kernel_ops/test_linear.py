"""kernels.linear: the fused oneDNN linear equals F.linear + activation (within bf16 rounding), and the
policy's ``fused_linear`` decides where it runs."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from samkit import policy
from samkit.kernels import linear as K

ACTS = {None: lambda t: t, "gelu": F.gelu, "relu": torch.relu}


def _layers():
    torch.manual_seed(0)
    layer = torch.nn.Linear(96, 384)
    return layer, copy.deepcopy(layer).to(torch.bfloat16), torch.randn(2, 8, 8, 96)


@pytest.mark.parametrize("activation", [None, "gelu", "relu"])
@pytest.mark.parametrize("fused", [True, False])
def test_policy_picks_the_route_and_float32_is_exact(monkeypatch, activation, fused):
    """The policy decides; float32 and autograd always take the plain route. The fused op is
    replaced by a recording stand-in so that the branch runs on any CPU (oneDNN refuses bf16
    where the CPU has no native bf16)."""
    calls = []

    def stand_in(x, weight, bias, attr, algorithm):
        calls.append((attr, algorithm))
        return K.linear_plain(x, weight, bias, activation)

    monkeypatch.setattr(K, "_fused_op", stand_in)
    layer, bf, x = _layers()
    with policy.override(fused_linear=fused), torch.inference_mode():
        assert torch.equal(K.linear(layer, x, activation), ACTS[activation](layer(x)))
        assert calls == []  # float32: never fused
        got = K.linear(bf, x.to(torch.bfloat16), activation)
    assert got.dtype == torch.bfloat16 and got.shape == (2, 8, 8, 384)
    assert calls == ([K._FUSED_ACTIVATIONS[activation]] if fused else [])
    with policy.override(fused_linear=fused):
        y = K.linear(bf, x.to(torch.bfloat16), activation)  # autograd on: the plain route
    y.float().sum().backward()
    assert bf.weight.grad is not None and len(calls) == (1 if fused else 0)
    with pytest.raises(ValueError, match="activation"):
        K.linear(layer, x, "swish")


@pytest.mark.parametrize("activation", [None, "gelu", "relu"])
def test_the_real_fused_op_is_within_bf16_rounding(activation):
    """Where this CPU has native bf16 (the policy turns the fused op on), the real oneDNN op."""
    if not policy.decide("cpu").fused_linear:
        pytest.skip("this CPU has no native bfloat16: oneDNN's fused bf16 linear is not available")
    layer, bf, x = _layers()
    xb = x.to(torch.bfloat16)
    with torch.inference_mode():
        got, want = K.linear(bf, xb, activation), ACTS[activation](bf(xb))
    assert (got.float() - want.float()).abs().max() <= 0.02 * want.float().abs().max()


def test_pointwise_conv_equals_conv2d():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(16, 8, kernel_size=1)
    x = torch.randn(2, 5, 7, 16).permute(0, 3, 1, 2)  # a channels-last view, as the trunk gives
    with torch.inference_mode():
        got = K.pointwise_conv(conv, x)
        want = conv(x)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    assert got.permute(0, 2, 3, 1).is_contiguous()
    conv3 = torch.nn.Conv2d(16, 8, kernel_size=3, padding=1)
    with torch.inference_mode():
        torch.testing.assert_close(K.pointwise_conv(conv3, x), conv3(x))
