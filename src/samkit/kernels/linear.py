"""Linear layers with their bias and activation in one oneDNN op; 1x1 convolutions as matmuls.

The plain expressions these equal (exactly in float32; within bfloat16 rounding where they fuse)::

    y = F.linear(x, weight, bias)          # then F.gelu(y) / F.relu(y) for the activation
    y = F.conv2d(x, conv.weight, conv.bias) # a 1x1 convolution

In bfloat16 inference on a CPU (the fast path) with native bf16 and oneDNN, :func:`linear_with` runs
one ``torch.ops.mkldnn._linear_pointwise`` call (the op inductor's CPU backend emits) that applies
the bias and activation as it writes its output; the plain route copies the bias into the output
first and makes another pass for the activation. The execution policy's ``fused_linear`` says
whether this CPU takes it (:mod:`samkit.policy`). Float32 (which must keep the reference's
numbers), autograd and other devices take the plain route. Tested in ``tests/kernels/test_linear.py``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..policy import current

__all__ = ["linear", "linear_plain", "linear_with", "pointwise_conv"]

_FUSED_ACTIVATIONS = {"gelu": ("gelu", "none"), "relu": ("relu", ""), None: ("none", "")}


def linear_plain(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str | None = None
) -> torch.Tensor:
    """The plain expression: ``F.linear`` then the activation (None, "gelu": exact erf GELU, "relu")."""
    y = F.linear(x, weight, bias)
    if activation == "gelu":
        return F.gelu(y)
    if activation == "relu":
        return F.relu(y)
    if activation is not None:
        raise ValueError(f"unknown activation {activation!r}")
    return y


def linear(layer: nn.Linear, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
    """``layer(x)`` followed by ``activation``: :func:`linear_with` of the layer's weight and bias."""
    return linear_with(x, layer.weight, layer.bias, activation)


def linear_with(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str | None = None
) -> torch.Tensor:
    """:func:`linear_plain`, fused into one oneDNN call for bfloat16 CPU inference where the policy
    says so. ``weight`` (out, in), ``bias`` (out,)."""
    if (
        x.dtype == torch.bfloat16
        and weight.dtype == torch.bfloat16
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and activation in _FUSED_ACTIVATIONS
        and current("cpu").fused_linear
    ):
        attr, algorithm = _FUSED_ACTIVATIONS[activation]
        return _fused_op(x, weight, bias, attr, algorithm)
    return linear_plain(x, weight, bias, activation)


def _fused_op(x, weight, bias, attr: str, algorithm: str) -> torch.Tensor:
    """oneDNN's linear with a pointwise epilogue (native bf16 CPUs only; elsewhere oneDNN refuses)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, attr, [], algorithm)


def pointwise_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` in x's dtype (the weights are cast for the call). A 1x1 convolution runs as a matmul
    over the channels of the channels-last view the trunk's feature maps already have (the
    convolution kernel would first copy the map into NCHW order); the result is a channels-last
    (B, C_out, H, W) view. Other convolutions are ``F.conv2d``."""
    weight = conv.weight.to(x.dtype)
    bias = None if conv.bias is None else conv.bias.to(x.dtype)
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return linear_with(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
