"""LoRA: low-rank updates of the attention projections, the rest of the model frozen.

Each adapted ``nn.Linear`` keeps its weight W frozen and gains a parametrization
W + (alpha / r) * B @ A, with A (r, in) random and B (out, r) zero, so training starts from the
model as it was. A parametrization rather than a wrapper module: every code path that reads
``linear.weight`` (samkit's kernels do) sees the adapted weight. :func:`merged_state_dict` folds the
updates into plain weights under the official keys, which is what checkpoints store.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import parametrize

# attention projections of the trunk (qkv, proj), the memory attention and the mask decoder
DEFAULT_TARGETS = ("attn.qkv", "attn.proj", "q_proj", "k_proj", "v_proj", "out_proj")


class LoRA(nn.Module):
    def __init__(self, out_features: int, in_features: int, rank: int, alpha: float) -> None:
        super().__init__()
        self.A = nn.Parameter(torch.empty(rank, in_features))
        self.B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))
        self.scale = alpha / rank

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.B @ self.A).to(weight.dtype) * self.scale


def add_lora(
    model: nn.Module, rank: int = 8, alpha: float | None = None, targets: tuple[str, ...] = DEFAULT_TARGETS
) -> list[str]:
    """Freeze ``model`` and add LoRA of ``rank`` to every ``nn.Linear`` whose name ends with one of
    ``targets``; returns their names. ``alpha`` defaults to ``rank`` (scale 1)."""
    if rank < 1:
        raise ValueError(f"LoRA rank must be >= 1, got {rank}")
    alpha = float(rank if alpha is None else alpha)
    for p in model.parameters():
        p.requires_grad_(False)
    names = []
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Linear) and name.endswith(targets):
            lora = LoRA(mod.out_features, mod.in_features, rank, alpha).to(mod.weight.device)
            parametrize.register_parametrization(mod, "weight", lora)
            names.append(name)
    if not names:
        raise ValueError(f"no linear layer matches the LoRA targets {targets}")
    return names


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's weights under the official keys, LoRA updates folded in."""
    out: dict[str, torch.Tensor] = {}
    lora_modules = {
        name: mod for name, mod in model.named_modules() if parametrize.is_parametrized(mod, "weight")
    }
    for key, value in model.state_dict().items():
        if ".parametrizations." not in key:
            out[key] = value
            continue
        owner, rest = key.split(".parametrizations.", 1)
        if rest == "weight.original":
            with torch.no_grad():
                out[f"{owner}.weight"] = lora_modules[owner].weight.detach().clone()
    return out
