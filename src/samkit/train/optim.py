"""Optimizer, schedule and regularization as in Meta's SAM 2.1 fine-tuning: AdamW with one learning
rate for the image encoder and another for the rest, layer-wise decay on the trunk's blocks, weight
decay except on biases and LayerNorms, a cosine schedule down to a tenth, gradient clipping."""

from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass

import torch
from torch import nn

from ..modeling import SAM2Model


@dataclass(frozen=True)
class OptimSettings:
    """Defaults: ``sam2.1_hiera_b+_MOSE_finetune.yaml``."""

    lr: float = 5e-6
    encoder_lr: float = 3e-6
    layer_decay: float = 0.9
    weight_decay: float = 0.1
    final_lr_fraction: float = 0.1
    clip_grad_norm: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)

    def __post_init__(self) -> None:
        if self.lr <= 0 or self.encoder_lr < 0:
            raise ValueError(
                f"learning rates must be positive, got lr={self.lr}, encoder_lr={self.encoder_lr}"
            )
        if not 0 < self.layer_decay <= 1:
            raise ValueError(f"layer_decay must be in (0, 1], got {self.layer_decay}")


def trunk_layer_id(name: str, depth: int) -> int:
    """Layer index of a trunk parameter for layer-wise decay: 0 for the patch and position
    embeddings, i + 1 for block i, depth + 1 for anything else."""
    if "pos_embed" in name or "patch_embed" in name:
        return 0
    if ".blocks." in name:
        return int(name.split(".blocks.")[1].split(".")[0]) + 1
    return depth + 1


def lr_scale(name: str, depth: int, decay: float) -> float:
    """The learning-rate multiplier of a parameter: decay ** (depth + 1 - layer) in the trunk (the
    position embeddings excepted: 1), 1 elsewhere."""
    if not name.startswith("image_encoder.trunk."):
        return 1.0
    if fnmatch.fnmatchcase(name, "*pos_embed*"):
        return 1.0
    return decay ** (depth + 1 - trunk_layer_id(name, depth))


def no_weight_decay(model: nn.Module) -> set[str]:
    """Biases and every parameter of a ``torch.nn.LayerNorm``."""
    names = {n for n, _ in model.named_parameters() if "bias" in n}
    for mod_name, mod in model.named_modules():
        if isinstance(mod, nn.LayerNorm):
            names |= {f"{mod_name}.{p}" if mod_name else p for p, _ in mod.named_parameters(recurse=False)}
    return names


def param_groups(model: SAM2Model, s: OptimSettings) -> list[dict]:
    """AdamW parameter groups: one per (base lr, lr multiplier, weight decay), each with
    ``base_lr`` (before the schedule), ``lr_scale`` and ``names``. Frozen parameters are left out."""
    depth = len(model.image_encoder.trunk.blocks)
    skip_decay = no_weight_decay(model)
    groups: dict[tuple[float, float, float], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        base = s.encoder_lr if name.startswith("image_encoder.") else s.lr
        scale = lr_scale(name, depth, s.layer_decay)
        wd = 0.0 if name in skip_decay else s.weight_decay
        g = groups.setdefault(
            (base, scale, wd),
            {"params": [], "names": [], "base_lr": base, "lr_scale": scale, "weight_decay": wd},
        )
        g["params"].append(p)
        g["names"].append(name)
    return list(groups.values())


def complete_decoder_grads(model: SAM2Model) -> None:
    """Zero gradients for the mask decoder's parameters that samkit's decoder skips but the
    reference computes: the first mask token's hypernetwork when several masks are asked for (its
    mask is dropped) and the key biases of attention to the image (a shift of every key that softmax
    ignores). Their gradient is exactly zero; giving it (rather than none) makes the optimizer decay
    and update them as it does in the reference. Only when the decoder took part in the step."""
    params = [p for p in model.sam_mask_decoder.parameters() if p.requires_grad]
    if any(p.grad is not None for p in params):
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)


def cosine_lr(base: float, progress: float, final_fraction: float) -> float:
    """Cosine from ``base`` at progress 0 to ``base * final_fraction`` at progress 1."""
    end = base * final_fraction
    progress = min(max(progress, 0.0), 1.0)
    return end + 0.5 * (base - end) * (1 + math.cos(math.pi * progress))


def make_optimizer(model: SAM2Model, s: OptimSettings) -> torch.optim.AdamW:
    groups = param_groups(model, s)
    if not groups:
        raise ValueError("nothing to train: every parameter is frozen")
    for g in groups:
        g["lr"] = g["base_lr"] * g["lr_scale"]
    return torch.optim.AdamW(groups, betas=s.betas)


def set_lr(opt: torch.optim.Optimizer, progress: float, s: OptimSettings) -> None:
    """Apply the schedule at ``progress`` (step / total steps) to every group."""
    for g in opt.param_groups:
        g["lr"] = cosine_lr(g["base_lr"], progress, s.final_lr_fraction) * g["lr_scale"]


def set_regularization(model: SAM2Model, dropout: float = 0.1, drop_path: float = 0.1) -> None:
    """Training-time regularization (active in train mode only): dropout in the memory attention
    (its residual branches, MLP and attention weights) and stochastic depth in the trunk, rising
    linearly from 0 at the first block to ``drop_path`` at the last."""
    from ..modeling.memory_attention import MemoryAttentionLayer
    from ..modeling.transformer import RoPEAttention

    for m in model.memory_attention.modules():
        if isinstance(m, (MemoryAttentionLayer, RoPEAttention)):
            m.dropout = float(dropout)
    blocks = model.image_encoder.trunk.blocks
    rates = torch.linspace(0, drop_path, len(blocks)).tolist()
    for block, rate in zip(blocks, rates):
        block.drop_path = float(rate)


FREEZABLE = {
    "image_encoder": ("image_encoder.",),
    "prompt_encoder": ("sam_prompt_encoder.",),
    "mask_decoder": ("sam_mask_decoder.",),
    "memory": (
        "memory_attention.",
        "memory_encoder.",
        "maskmem_tpos_enc",
        "no_mem_embed",
        "no_mem_pos_enc",
        "obj_ptr_proj.",
        "obj_ptr_tpos_proj.",
        "no_obj_ptr",
        "mask_downsample.",
        "no_obj_embed_spatial",
    ),
}


def freeze(model: SAM2Model, parts: list[str] | tuple[str, ...]) -> int:
    """Stop training the named parts (see :data:`FREEZABLE`); returns the number of frozen tensors."""
    n = 0
    for part in parts:
        if part not in FREEZABLE:
            raise ValueError(f"cannot freeze {part!r}: choose from {', '.join(FREEZABLE)}")
        for name, p in model.named_parameters():
            if name.startswith(FREEZABLE[part]):
                p.requires_grad_(False)
                n += 1
    return n
