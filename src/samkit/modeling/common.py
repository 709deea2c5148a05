"""Small building blocks shared by several components: MLP, a channels-first LayerNorm, pointwise convs."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import bf16_attention_by_matmuls, has_fast_bf16


def pointwise_conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` in x's dtype (the weights are cast for the call); a 1x1 convolution runs as a matmul
    over the channels of the channels-last view the trunk's feature maps already have.

    The fast path uses it: the convolution kernel first copied the 64 MiB level-0 map into NCHW order,
    twice (about 65 ms per 1024 px image). The result is a channels-last (B, C_out, H, W) view.
    """
    weight = conv.weight.to(x.dtype)
    bias = None if conv.bias is None else conv.bias.to(x.dtype)
    if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1:
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return linear_with(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)


def _linear_pointwise():
    """oneDNN's fused linear (the op inductor's CPU backend emits), or None where this build lacks it
    or the CPU has no native bf16 (AVX512-BF16 or AMX: elsewhere the plain route stays, as measured)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return None
    return op if torch.backends.mkldnn.is_available() and has_fast_bf16("cpu") else None


_LINEAR_POINTWISE = _linear_pointwise()
_FUSED_ACTIVATIONS = {"gelu": ("gelu", "none"), "relu": ("relu", ""), None: ("none", "")}


def linear(layer: nn.Linear, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
    """``layer(x)`` followed by ``activation`` (None, "gelu": the exact erf GELU, or "relu").

    bfloat16 on the CPU without autograd (the fast path's inference) runs it as one oneDNN matmul with
    the bias and the activation applied as it writes its output. The plain route copies the bias into
    the output before the matmul and makes another pass for the activation: at the encoder's first
    stage (65536 x 96 -> 384) 21.4 ms against 13.1 ms fused. Elsewhere (float32, which must keep the
    reference's numbers; autograd; other devices) it is the plain route.
    """
    return linear_with(x, layer.weight, layer.bias, activation)


def linear_with(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str | None = None
) -> torch.Tensor:
    """:func:`linear` with the weight (out, in) and bias given as tensors."""
    if (
        _LINEAR_POINTWISE is not None
        and x.dtype == torch.bfloat16
        and weight.dtype == torch.bfloat16
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and activation in _FUSED_ACTIVATIONS
    ):
        attr, algorithm = _FUSED_ACTIVATIONS[activation]
        return _LINEAR_POINTWISE(x, weight, bias, attr, [], algorithm)
    y = F.linear(x, weight, bias)
    if activation == "gelu":
        return F.gelu(y)
    if activation == "relu":
        return F.relu(y)
    if activation is not None:
        raise ValueError(f"unknown activation {activation!r}")
    return y


_BF16_ATTENTION_BY_MATMULS = bf16_attention_by_matmuls()
# Bytes of bfloat16 scores computed per query chunk: the scores of a chunk stay in the caches
# between the two matmuls and the softmax (4096 x 4096 global attention: 99 ms in chunks of 512
# queries, 132 ms unchunked, interleaved).
_SCORE_CHUNK_BYTES = 16 << 20


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``F.scaled_dot_product_attention(q, k, v)``: q (..., Nq, d), k and v (..., Nk, d) -> (..., Nq, d).

    bfloat16 inference on CPUs where the fused kernel is slow (:func:`samkit.runtime.bf16_attention_by_matmuls`)
    computes it as bf16 matmuls and a softmax instead, in chunks of queries. The scores are then
    rounded to bf16 before the softmax, where the fused kernel keeps them in float32: a fast-path
    difference, bounded by the fast path's agreement tests. Everywhere else (float32, which must
    keep the reference's numbers; autograd; other devices) it is the fused call.
    """
    if not (
        _BF16_ATTENTION_BY_MATMULS
        and q.dtype == torch.bfloat16
        and q.device.type == "cpu"
        and not torch.is_grad_enabled()
        and q.numel() > 0
        and k.numel() > 0
    ):
        return F.scaled_dot_product_attention(q, k, v)
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


class MLP(nn.Module):
    """``num_layers`` linear layers with an activation between them.

    Parameter names (``layers.{i}.weight``) match the official checkpoints.
    """

    def __init__(
        self,
        input_dim: int,
        hidden_dim: int,
        output_dim: int,
        num_layers: int,
        activation: type[nn.Module] = nn.ReLU,
        sigmoid_output: bool = False,
    ) -> None:
        super().__init__()
        dims = [input_dim] + [hidden_dim] * (num_layers - 1) + [output_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.act = activation()
        self.sigmoid_output = sigmoid_output

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        last = len(self.layers) - 1
        act = self._activation_name()
        for i, layer in enumerate(self.layers):
            if act is not None:
                # bias and activation fused where they can be (common.linear)
                x = linear(layer, x, act if i < last else None)
                continue
            x = layer(x)
            if i < last:
                x = self.act(x)
        return torch.sigmoid(x) if self.sigmoid_output else x

    def _activation_name(self) -> str | None:
        if type(self.act) is nn.GELU and self.act.approximate == "none":
            return "gelu"
        if type(self.act) is nn.ReLU:
            return "relu"
        return None


class LayerNorm2d(nn.Module):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor."""

    def __init__(self, num_channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Written out rather than F.layer_norm on a permuted view: the same arithmetic as the
        # reference keeps logits equal to the last bits, and it avoids two permute copies.
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


def stability_score(mask_logits: torch.Tensor, threshold: float, offset: float) -> torch.Tensor:
    """IoU between the masks thresholded at ``threshold + offset`` and ``threshold - offset``.

    mask_logits: (..., H, W) -> (...,). Where the looser mask is empty the score is 1.
    """
    flat = mask_logits.flatten(-2)
    inter = (flat > threshold + offset).sum(-1, dtype=torch.int32).float()
    union = (flat > threshold - offset).sum(-1, dtype=torch.int32).float()
    return torch.where(union > 0, inter / union, torch.ones_like(inter))
