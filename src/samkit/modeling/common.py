"""Small building blocks shared by several components: MLP, a channels-first LayerNorm, pointwise convs."""

from __future__ import annotations

import torch
from torch import nn

# the fast path's linear layers, 1x1 convolutions and attention are kernels (samkit.kernels); the
# modules import them from here
from ..kernels.attention import attention
from ..kernels.linear import linear, linear_with, pointwise_conv

__all__ = ["MLP", "LayerNorm2d", "attention", "linear", "linear_with", "pointwise_conv", "stability_score"]


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
                # bias and activation fused where they can be (kernels.linear)
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


def stability_score(
    mask_logits: torch.Tensor, threshold: float, offset: float, empty: float = 1.0
) -> torch.Tensor:
    """IoU between the masks thresholded at ``threshold + offset`` and ``threshold - offset``, over the
    last two axes: (..., H, W) -> (...,). Integer counts, then one float32 division, so the score is
    the reference's bit for bit. Where the looser mask is empty the score is ``empty``: 1 for the mask
    decoder's stability fallback, NaN in the automatic mask generator (both as the reference has them).
    """
    inter = (mask_logits > threshold + offset).sum((-1, -2), dtype=torch.int32)
    union = (mask_logits > threshold - offset).sum((-1, -2), dtype=torch.int32)
    score = inter / union
    if empty != empty:  # NaN: what 0 / 0 already gives
        return score
    return torch.where(union > 0, score, torch.full_like(score, empty))
