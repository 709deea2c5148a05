"""Attention layers: the two-way transformer of the SAM mask decoder, and rotary attention for memory."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..policy import current
from .common import MLP, attention
from .position_encoding import apply_rope, apply_rope_real, axial_rope_angles, rope_cos_sin, rope_rotations


def project(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer(x)`` in x's dtype: the fast decoder keeps its token-side weights in float32 (a bfloat16
    matmul of a few rows has several times a float32 one's fixed overhead on the CPU), and these
    few layers also project the bfloat16 image. A no-op cast when the dtypes agree."""
    bias = None if layer.bias is None else layer.bias.to(x.dtype)
    return F.linear(x, layer.weight.to(x.dtype), bias)


class Attention(nn.Module):
    """Multi-head attention with an optional down-projection of the inner width.

    q: (B, Nq, C), k/v: (B, Nk, kv_in_dim) -> (B, Nq, C). Queries and keys may differ in dtype (the
    fast decoder's float32 tokens against its bfloat16 image): the attention then runs in the dtype of
    the longer side (the image), and so does its output.
    """

    def __init__(
        self, embedding_dim: int, num_heads: int, downsample_rate: int = 1, kv_in_dim: int | None = None
    ) -> None:
        super().__init__()
        self.embedding_dim = embedding_dim
        self.kv_in_dim = kv_in_dim if kv_in_dim is not None else embedding_dim
        self.internal_dim = embedding_dim // downsample_rate
        self.num_heads = num_heads
        if self.internal_dim % num_heads:
            raise ValueError("num_heads must divide the internal dimension")
        self.q_proj = nn.Linear(embedding_dim, self.internal_dim)
        self.k_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.v_proj = nn.Linear(self.kv_in_dim, self.internal_dim)
        self.out_proj = nn.Linear(self.internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.reshape(b, n, self.num_heads, c // self.num_heads).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:
        b, h, n, d = x.shape
        return x.transpose(1, 2).reshape(b, n, h * d)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # An input with batch 1 is shared by the whole batch: it is projected once, then broadcast
        # (the decoder's first layer sees the same image for every prompt).
        q, k, v = (
            self._heads(project(p, x)) for p, x in ((self.q_proj, q), (self.k_proj, k), (self.v_proj, v))
        )
        if not q.dtype == k.dtype == v.dtype:
            dt = q.dtype if q.shape[-2] >= k.shape[-2] else k.dtype
            q, k, v = q.to(dt), k.to(dt), v.to(dt)
        b = max(q.shape[0], k.shape[0], v.shape[0])
        q, k, v = (t.expand(b, -1, -1, -1) if t.shape[0] != b else t for t in (q, k, v))
        return project(self.out_proj, self._merge(attention(q, k, v)))

    # The decoder's cross attentions pair a few tokens (T: output tokens + prompt points, about 8)
    # with thousands of image tokens (N = 4096). With H heads of width d = D / H, projecting the N
    # image tokens to D = 128 and back costs N*C*D multiply-adds each way, while every head only ever
    # sees T numbers per image token. Re-associating the products so that the image tokens meet
    # (H*T x C) matrices built from the tokens costs N*C*H*T instead: 64 against 128 here, and it
    # never materializes the (B, N, D) projections. Scores are kept as (B, H, T, N), so that the
    # softmax over T runs along long contiguous rows. Equal to forward() up to float rounding.

    def _cheaper_reassociated(self, n_tokens: int) -> bool:
        return n_tokens * self.num_heads < self.internal_dim

    def project_kv(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Head-split projections of one image's keys and values (1, N, C), to share across
        ``attend_to_image`` calls: keys transposed (H, d, N) and values (H, N, d), both contiguous, so
        that every call reads them as they are (no per-call transposed copy)."""
        kh = self._heads(project(self.k_proj, k))[0].transpose(1, 2).contiguous()
        # (the head split is a transposed view: bmm would copy it on every call)
        return kh, self._heads(project(self.v_proj, v))[0].contiguous()

    def project_q(self, q: torch.Tensor) -> torch.Tensor:
        """Head-split query projection of one image (1, N, C), transposed to (H, d, N) and contiguous,
        to share across ``attend_to_tokens`` calls (the copy a transposed bmm operand would cost every
        call is made once per image)."""
        return self._heads(project(self.q_proj, q))[0].transpose(1, 2).contiguous()

    def attend_to_image(
        self,
        q: torch.Tensor,
        k: torch.Tensor | None,
        v: torch.Tensor | None,
        kv_heads: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Tokens attend to image tokens. q: (B, T, C); k, v: (B, N, C), or instead ``kv_heads`` from
        ``project_kv`` of one image shared by the batch -> (B, T, C)."""
        b, t, _ = q.shape
        if kv_heads is not None:
            # the B*T queries of a head meet its shared keys in one (B*T x d) @ (d x N) product: for
            # queries this short the CPU's flash-attention kernel is several times slower
            kt, vh = kv_heads
            h, d = kt.shape[0], kt.shape[1]
            qh = self._heads(self.q_proj(q)) * d**-0.5  # (B, H, T, d)
            p = torch.bmm(qh.transpose(0, 1).reshape(h, b * t, d).to(kt.dtype), kt).softmax(-1)  # (H, B*T, N)
            o = torch.bmm(p, vh).view(h, b, t, d).transpose(0, 1)  # (B, H, T, d)
            return self.out_proj(self._merge(o).to(q.dtype))
        if (k.shape[0] == 1 and b > 1) or not self._cheaper_reassociated(t):
            return self.forward(q, k, v).to(q.dtype)
        h, d = self.num_heads, self.internal_dim // self.num_heads
        qh = self._heads(self.q_proj(q)) * d**-0.5  # (B, H, T, d)
        # scores = q_h . (W_k,h k + b_k,h): the bias adds one constant per (head, token) row, which
        # the softmax over image tokens cancels
        a = torch.matmul(qh, self.k_proj.weight.view(h, d, -1)).reshape(b, h * t, -1)  # (B, H*T, C)
        p = torch.bmm(a.to(k.dtype), k.transpose(1, 2)).softmax(-1)  # (B, H*T, N)
        # P_h (W_v,h v + b_v,h) = (P_h v) W_v,h^T + b_v,h since each row of P_h sums to 1
        g = torch.bmm(p, v).view(b, h, t, -1).to(q.dtype)  # (B, H, T, C)
        o = torch.matmul(g, self.v_proj.weight.view(h, d, -1).transpose(1, 2)) + self.v_proj.bias.view(
            h, 1, d
        )
        return self.out_proj(self._merge(o))

    def attend_to_tokens(
        self,
        q: torch.Tensor | None,
        k: torch.Tensor,
        v: torch.Tensor,
        residual: torch.Tensor,
        q_heads: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Image tokens attend to tokens, plus a residual: ``residual + forward(q, k, v)``.

        q: (B, N, C) image tokens, or instead ``q_heads`` (H, d, N) from ``project_q`` of one image
        shared by the batch; k, v: (B, T, C) tokens; residual: (B or 1, N, C) -> (B, N, C) in the
        residual's dtype.
        """
        b, t, _ = k.shape
        if q_heads is None and not self._cheaper_reassociated(t):
            return residual + self.forward(q, k, v).to(residual.dtype)
        h, d = self.num_heads, self.internal_dim // self.num_heads
        c = self.embedding_dim
        kh = self._heads(self.k_proj(k)) * d**-0.5  # (B, H, T, d)
        vh = self._heads(self.v_proj(v))  # (B, H, T, d)
        # out = sum_h P_h (V_h W_o,h^T) + b_o; each head's P_h sums to 1 over its tokens, so b_o / H
        # added to every row of E adds b_o exactly once
        w_o = self.out_proj.weight.view(c, h, d).permute(1, 2, 0)  # (H, d, C)
        e = (torch.matmul(vh, w_o) + self.out_proj.bias / h).reshape(b, h * t, c)  # (B, H*T, C)
        if q_heads is not None:
            # the image's projection is shared: per prompt only (T x N) scores per head, computed as
            # one (B*T x d) @ (d x N) product per head rather than broadcasting the image over B
            s = torch.bmm(kh.transpose(0, 1).reshape(h, b * t, d).to(q_heads.dtype), q_heads)
            s = s.view(h, b, t, -1).transpose(0, 1)  # (B, H, T, N)
        else:
            # scores = (W_q,h q + b_q,h) . k_h = (W_q,h^T k_h) . q + b_q,h . k_h
            m = torch.matmul(kh, self.q_proj.weight.view(h, d, -1)).reshape(b, h * t, -1)  # (B, H*T, C)
            bias = torch.matmul(kh, self.q_proj.bias.view(h, d, 1)).reshape(b, h * t, 1)
            s = torch.baddbmm(bias.to(q.dtype), m.to(q.dtype), q.transpose(1, 2)).view(
                b, h, t, -1
            )  # (B, H, T, N)
        p = s.softmax(2).reshape(b, h * t, -1)
        return torch.baddbmm(residual.expand(b, -1, -1), p.transpose(1, 2), e.to(residual.dtype))


class RoPEAttention(Attention):
    """Attention with 2-D axial rotary encoding of queries and keys.

    With ``rope_k_repeat`` the keys may hold several frames of the query grid (memory); the
    last ``num_k_exclude_rope`` keys (object pointers) are not rotated.
    """

    def __init__(self, *args, rope_theta: float = 10000.0, rope_k_repeat: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.rope_theta = rope_theta
        self.rope_k_repeat = rope_k_repeat
        self._rope_cache: dict[tuple, torch.Tensor | tuple[torch.Tensor, torch.Tensor]] = {}
        self.dropout = 0.0  # attention dropout in training mode (samkit.train sets it)

    def _rotations(self, n: int, device: torch.device, real: bool = False):
        """RoPE rotations of a square grid of n tokens, cached per size, device and form: complex
        (n, d / 2), or with ``real`` the (cos, sin) pair of (n, d / 2) tensors."""
        n = int(n)  # (a traced size during ONNX export: the grid is fixed there)
        key = (n, device, real)
        if key not in self._rope_cache:
            side = int(round(n**0.5))
            if side * side != n:
                raise ValueError(f"RoPE attention needs a square token grid, got {n} tokens")
            angles = axial_rope_angles(self.internal_dim // self.num_heads, side, side, self.rope_theta)
            if real:
                self._rope_cache[key] = tuple(t.to(device) for t in rope_cos_sin(angles))
            else:
                self._rope_cache[key] = rope_rotations(angles).to(device)
        return self._rope_cache[key]

    def _rotate(self, x: torch.Tensor, n: int, real: bool) -> torch.Tensor:
        if real:
            return apply_rope_real(x, *self._rotations(n, x.device, real=True))
        return apply_rope(x, self._rotations(n, x.device))

    def forward(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        num_k_exclude_rope: int = 0,
        key_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``key_mask`` (B, Nk) bool: attend only to the keys where it is True."""
        q, k, v = self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v))
        nq = q.shape[-2]
        real = current(q.device).rope == "real"
        q = self._rotate(q, nq, real)
        n_rope = k.shape[-2] - num_k_exclude_rope
        if n_rope > 0:
            if n_rope != nq and not self.rope_k_repeat:
                raise ValueError("keys and queries differ in length but rope_k_repeat is off")
            # (the rotations of one frame's grid, broadcast over the memory's frames)
            if num_k_exclude_rope > 0 and (real or (torch.is_grad_enabled() and k.requires_grad)):
                # out of place: autograd does not differentiate through `out=`, and a trace for export
                # should not record an in-place write
                k = torch.cat([self._rotate(k[:, :, :n_rope], nq, real), k[:, :, n_rope:]], dim=2)
            elif num_k_exclude_rope > 0:
                # rotate the spatial keys in place of a fresh (B, H, M, d) tensor and a concatenation;
                # the object-pointer keys after them stay as they are
                k = k.contiguous()
                apply_rope(k[:, :, :n_rope], self._rotations(nq, k.device), out=k[:, :, :n_rope])
            else:
                k = self._rotate(k, nq, real)
        dropout = self.dropout if self.training else 0.0
        return self.out_proj(self._merge(attention(q, k, v, dropout_p=dropout, key_mask=key_mask)))


class TwoWayAttentionBlock(nn.Module):
    """Tokens self-attend, attend to the image, pass an MLP; then the image attends to the tokens."""

    def __init__(
        self,
        embedding_dim: int,
        num_heads: int,
        mlp_dim: int,
        attention_downsample_rate: int,
        skip_first_layer_pe: bool,
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self,
        queries: torch.Tensor,
        keys: torch.Tensor,
        query_pe: torch.Tensor,
        key_pe: torch.Tensor,
        shared: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries: (B, T, C); keys: (B or 1, N, C); ``shared``: ``share_image(keys, key_pe)`` when keys
        is one image for the whole batch (computed once for several calls)."""
        if self.skip_first_layer_pe:
            # first layer: the queries are the prompt encodings themselves, no residual
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        t2i, i2t = self.cross_attn_token_to_image, self.cross_attn_image_to_token
        if shared is not None:
            keys = keys[:1]  # the shared image itself (callers may pass it expanded)
        elif keys.shape[0] == 1 and queries.shape[0] > 1:
            shared = self.share_image(keys, key_pe)
        # both cross attentions see the image tokens with their positions: add them once
        k = None if shared is not None else keys + key_pe
        kv = None if shared is None else shared[:2]
        queries = self.norm2(queries + t2i.attend_to_image(queries + query_pe, k, keys, kv_heads=kv))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        q_heads = None if shared is None else shared[2]
        keys = self.norm4(i2t.attend_to_tokens(k, q, queries, residual=keys, q_heads=q_heads))
        return queries, keys

    def share_image(
        self, keys: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The projections of one image (1, N, C) that both cross attentions use, whatever the prompts:
        keys (H, d, N) and values (H, N, d) for token->image, queries (H, d, N) for image->token."""
        k = keys + key_pe
        kh, vh = self.cross_attn_token_to_image.project_kv(k, keys)
        return kh, vh, self.cross_attn_image_to_token.project_q(k)


class TwoWayTransformer(nn.Module):
    """The SAM decoder's transformer.

    image_embedding, image_pe: (B, C, h, w); point_embedding: (B, N, C).
    Returns the updated tokens (B, N, C) and image tokens (B, h*w, C).
    """

    def __init__(
        self, depth: int, embedding_dim: int, num_heads: int, mlp_dim: int, attention_downsample_rate: int = 2
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, attention_downsample_rate, i == 0)
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, attention_downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self,
        image_embedding: torch.Tensor,
        image_pe: torch.Tensor,
        point_embedding: torch.Tensor,
        shared: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
        n_out: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``shared``: ``share_image(image_embedding, image_pe)`` for a batch-1 image that several
        calls (groups of prompts) use. ``n_out``: only the first n_out tokens are returned (B, n_out, C);
        the last attention is computed for those alone (each token's output depends only on itself
        and the image there)."""
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        key_pe = image_pe.flatten(2).permute(0, 2, 1)
        queries = point_embedding
        for i, layer in enumerate(self.layers):
            queries, keys = layer(queries, keys, point_embedding, key_pe, shared if i == 0 else None)
        queries, point_embedding = queries[:, :n_out], point_embedding[:, :n_out]
        q, k = queries + point_embedding, keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image.attend_to_image(q, k, keys))
        return queries, keys

    def share_image(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """The first layer's projections of one image (1, C, h, w), whatever the prompts."""
        if not self.layers:
            return None
        keys = image_embedding.flatten(2).permute(0, 2, 1)
        return self.layers[0].share_image(keys, image_pe.flatten(2).permute(0, 2, 1))
