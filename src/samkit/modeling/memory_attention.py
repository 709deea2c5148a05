"""Memory attention: the current frame's features self-attend, then cross-attend to the memory bank
(past frames' encoded masks and object pointers), with rotary position encoding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .transformer import RoPEAttention


class MemoryAttentionLayer(nn.Module):
    """Pre-norm layer: RoPE self-attention, RoPE cross-attention to memory, ReLU MLP."""

    def __init__(
        self, d_model: int, kv_dim: int, dim_feedforward: int, num_heads: int, rope_theta: float
    ) -> None:
        super().__init__()
        self.self_attn = RoPEAttention(d_model, num_heads, rope_theta=rope_theta)
        self.cross_attn_image = RoPEAttention(
            d_model, num_heads, rope_theta=rope_theta, rope_k_repeat=True, kv_in_dim=kv_dim
        )
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        # dropout on the residual branches and inside the MLP, as in training (samkit.train sets it);
        # inactive in eval mode
        self.dropout = 0.0

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_k_exclude_rope: int = 0,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        p = self.dropout if self.training else 0.0
        h = self.norm1(x)
        x = x + F.dropout(self.self_attn(h, h, h), p, self.training)
        h = self.norm2(x)
        # keys carry their position encoding, queries do not (as configured for every SAM 2 model)
        h = self.cross_attn_image(
            h, memory + memory_pos, memory, num_k_exclude_rope=num_k_exclude_rope, key_mask=memory_mask
        )
        x = x + F.dropout(h, p, self.training)
        h = self.norm3(x)
        h = self.linear2(F.dropout(F.relu(self.linear1(h)), p, self.training))
        return x + F.dropout(h, p, self.training)


class MemoryAttention(nn.Module):
    """Stack of :class:`MemoryAttentionLayer` with a final LayerNorm.

    curr, curr_pos: (B, HW, C); memory, memory_pos: (B, M, mem_dim) where the last
    ``num_obj_ptr_tokens`` entries are object-pointer tokens; ``memory_mask`` (B, M) bool, optional:
    only the entries where it is True are memory (a fixed-size bank with empty slots). Returns (B, HW, C).
    """

    def __init__(
        self,
        d_model: int,
        kv_dim: int,
        num_layers: int,
        dim_feedforward: int,
        num_heads: int,
        rope_theta: float,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            MemoryAttentionLayer(d_model, kv_dim, dim_feedforward, num_heads, rope_theta)
            for _ in range(num_layers)
        )
        self.norm = nn.LayerNorm(d_model)

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor,
        memory: torch.Tensor,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
        memory_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        x = curr + 0.1 * curr_pos
        for layer in self.layers:
            x = layer(x, memory, memory_pos, num_k_exclude_rope=num_obj_ptr_tokens, memory_mask=memory_mask)
        return self.norm(x)
