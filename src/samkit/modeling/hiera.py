"""Hiera trunk of the image encoder (Ryali et al. 2023, "Hiera"; SAM 2 uses the "hieradet" variant).

A four-stage hierarchical ViT on (B, H, W, C) tokens. Each stage halves the resolution by max-pooling
the queries of its first block and doubles the channels; most blocks attend inside windows, a few
attend globally. The position embedding is a bicubically-resized background plus a tiled window
embedding (Bolya et al. 2023, "Window attention is bugged").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import HieraConfig
from .common import MLP, attention, linear


def _pool(x: torch.Tensor, stride: tuple[int, int] | None) -> torch.Tensor:
    """Max-pool a (B, H, W, C) tensor by ``stride`` (kernel = stride, a remainder dropped, as
    ``F.max_pool2d`` does); identity when stride is None.

    Taken as the elementwise maximum of the stride's sub-grids of the channels-last tokens: the same
    values as max_pool2d on the NCHW view, which first copies the (often strided) tokens into NCHW
    order."""
    if stride is None:
        return x
    sh, sw = stride
    b, h, w, c = x.shape
    x = x[:, : h // sh * sh, : w // sw * sw].unflatten(1, (h // sh, sh)).unflatten(3, (w // sw, sw))
    out = x[:, :, 0, :, 0]
    for i in range(sh):
        for j in range(sw):
            if i or j:
                out = torch.maximum(out, x[:, :, i, :, j])
    return out


def window_partition(x: torch.Tensor, window: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(B, H, W, C) -> (B * nWindows, window, window, C), zero-padding H and W up to multiples."""
    b, h, w, c = x.shape
    pad_h, pad_w = (-h) % window, (-w) % window
    if pad_h or pad_w:
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
    hp, wp = h + pad_h, w + pad_w
    x = x.view(b, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: torch.Tensor, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> torch.Tensor:
    """Inverse of :func:`window_partition`, dropping the padding: returns (B, H, W, C)."""
    hp, wp = padded_hw
    h, w = hw
    b = windows.shape[0] // ((hp // window) * (wp // window))
    x = windows.reshape(b, hp // window, wp // window, window, window, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, -1)
    return x[:, :h, :w, :] if (hp > h or wp > w) else x


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention whose queries may be max-pooled (the stage transition)."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, q_stride: tuple[int, int] | None) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.q_stride = q_stride
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, H, W, C) -> (B, H', W', C_out) with H' = H / q_stride."""
        b, h, w, _ = x.shape
        qkv = linear(self.qkv, x).reshape(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.unbind(2)  # each (B, HW, heads, d)
        if self.q_stride is not None:
            q = _pool(q.reshape(b, h, w, -1), self.q_stride)
            h, w = q.shape[1:3]
            q = q.reshape(b, h * w, self.num_heads, -1)
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        return linear(self.proj, out.transpose(1, 2).reshape(b, h, w, -1))


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: in training, zero the whole branch of each sample with probability p and
    scale the kept ones by 1 / (1 - p); the identity otherwise."""
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
    if keep > 0.0:
        mask.div_(keep)
    return x * mask


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block with optional windowing and query pooling."""

    def __init__(
        self,
        dim: int,
        dim_out: int,
        num_heads: int,
        mlp_ratio: float,
        q_stride: tuple[int, int] | None,
        window_size: int,
    ) -> None:
        super().__init__()
        self.dim, self.dim_out = dim, dim_out
        self.window_size = window_size
        self.q_stride = q_stride
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, q_stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=1e-6)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        if dim != dim_out:
            self.proj = nn.Linear(dim, dim_out)
        # stochastic depth in training (samkit.train sets it); inactive in eval mode
        self.drop_path = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.norm1(x)
        if self.dim != self.dim_out:
            # the residual path changes width (and resolution) together with the attention path
            shortcut = _pool(linear(self.proj, x), self.q_stride)

        window = self.window_size
        if window > 0:
            h, w = x.shape[1:3]
            x, padded = window_partition(x, window)
        x = self.attn(x)
        if self.q_stride is not None and window > 0:
            # query pooling shrank every window; unpartition at the pooled size
            window = window // self.q_stride[0]
            h, w = shortcut.shape[1:3]
            padded = (h + (-h) % window, w + (-w) % window)
        if window > 0:
            x = window_unpartition(x, window, padded, (h, w))

        x = shortcut + drop_path(x, self.drop_path, self.training)
        return x + drop_path(self.mlp(self.norm2(x)), self.drop_path, self.training)


class PatchEmbed(nn.Module):
    """7x7 stride-4 convolution: (B, 3, H, W) -> (B, H/4, W/4, C)."""

    def __init__(self, embed_dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=7, stride=4, padding=3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            # the exact path keeps the reference's layout, a permuted view of the NCHW output: the
            # first stage's map reaches the neck NCHW in memory, and the neck's float32 1x1
            # convolution rounds differently (~1e-6) on a channels-last one
            return self.proj(x).permute(0, 2, 3, 1)
        # The fast path: a channels-last input makes oneDNN write a channels-last output, which is
        # (B, H, W, C) contiguous once permuted: no layout copy (the NCHW conv's bf16 kernel reorders
        # its output, then a copy), and the first stage's residual adds and norms do not work across
        # a channel stride of H*W.
        x = self.proj(x.contiguous(memory_format=torch.channels_last)).permute(0, 2, 3, 1)
        return x.contiguous()  # a no-op where the convolution honoured the layout


class Hiera(nn.Module):
    """The trunk. ``forward`` returns one (B, C_i, H_i, W_i) map per stage, highest resolution first."""

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        if len(cfg.stages) != len(cfg.window_spec):
            raise ValueError("stages and window_spec must have the same length")
        self.cfg = cfg
        ends = [sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages))]
        self.stage_ends = ends
        q_pool_blocks = [e + 1 for e in ends[:-1]][: cfg.q_pool]

        dim, heads = cfg.embed_dim, cfg.num_heads
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *cfg.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, dim, cfg.window_spec[0], cfg.window_spec[0]))

        self.blocks = nn.ModuleList()
        stage = 0
        for i in range(sum(cfg.stages)):
            # The window size lags the stage by one block: the first block of a stage still
            # works at the previous stage's window (it is the one that pools the queries).
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]
            dim_out = dim
            if i - 1 in ends:
                dim_out = int(dim * cfg.dim_mul)
                heads = int(heads * cfg.head_mul)
                stage += 1
            self.blocks.append(
                MultiScaleBlock(
                    dim,
                    dim_out,
                    heads,
                    cfg.mlp_ratio,
                    q_stride=tuple(cfg.q_stride) if i in q_pool_blocks else None,
                    window_size=window,
                )
            )
            dim = dim_out
        self.channel_list = [self.blocks[e].dim_out for e in ends[::-1]]
        self._pe_cache: tuple[tuple, torch.Tensor] | None = None  # see position_embedding

    def position_embedding(self, h: int, w: int) -> torch.Tensor:
        """(1, h, w, C) background (bicubic-resized) plus the window embedding tiled over it.

        Cached: it depends only on the size and the two parameters (the bicubic resize is a
        noticeable part of an encode). The key carries the parameters' version counters, so
        loading other weights in place computes it afresh.
        """
        win = self.pos_embed_window
        if torch.is_grad_enabled() and self.pos_embed.requires_grad:
            # training: gradients must reach the parameters, so no cache
            pe = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
            return (pe + win.tile([1, 1, h // win.shape[-2], w // win.shape[-1]])).permute(0, 2, 3, 1)
        key = (h, w, self.pos_embed.dtype, self.pos_embed.device, self.pos_embed._version, win._version)
        if self._pe_cache is not None and self._pe_cache[0] == key:
            return self._pe_cache[1]
        with torch.no_grad():
            pe = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic")
            pe = (pe + win.tile([1, 1, h // win.shape[-2], w // win.shape[-1]])).permute(0, 2, 3, 1)
        if pe.dtype != torch.float32:
            # stored in the layout of the tokens it is added to (see PatchEmbed.forward)
            pe = pe.contiguous()
        self._pe_cache = (key, pe)
        return pe

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(x)
        x = x + self.position_embedding(x.shape[1], x.shape[2])
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
