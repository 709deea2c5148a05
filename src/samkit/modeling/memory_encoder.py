"""Memory encoder: fuses a frame's features with its predicted mask into a compact memory."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingSine


class MaskDownSampler(nn.Module):
    """(B, 1, S, S) mask -> (B, embed_dim, S/16, S/16) through strided convs + LayerNorm2d + GELU."""

    def __init__(
        self, embed_dim: int, kernel_size: int = 3, stride: int = 2, padding: int = 1, total_stride: int = 16
    ) -> None:
        super().__init__()
        num_layers = int(math.log2(total_stride) // math.log2(stride))
        if stride**num_layers != total_stride:
            raise ValueError("total_stride must be a power of stride")
        layers: list[nn.Module] = []
        chans = 1
        for _ in range(num_layers):
            out = chans * stride**2
            layers += [nn.Conv2d(chans, out, kernel_size, stride, padding), LayerNorm2d(out), nn.GELU()]
            chans = out
        layers.append(nn.Conv2d(chans, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise conv, LayerNorm, pointwise MLP (as linears), layer scale, residual."""

    def __init__(self, dim: int, kernel_size: int = 7, padding: int = 3) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=padding, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(1e-6 * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dwconv(x)).permute(0, 2, 3, 1)
        h = self.gamma * self.pwconv2(F.gelu(self.pwconv1(h)))
        return x + h.permute(0, 3, 1, 2)


class Fuser(nn.Module):
    def __init__(self, dim: int, num_layers: int, kernel_size: int = 7) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CXBlock(dim, kernel_size, kernel_size // 2) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """pix_feat (B, C, h, w) + mask (B, 1, S, S) -> memory (B, out_dim, h, w) and its position encoding."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        fuser_layers: int = 2,
        fuser_kernel: int = 7,
        ds_kernel: int = 3,
        ds_stride: int = 2,
        ds_padding: int = 1,
        ds_total_stride: int = 16,
    ) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownSampler(in_dim, ds_kernel, ds_stride, ds_padding, ds_total_stride)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim, fuser_layers, fuser_kernel)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1) if out_dim != in_dim else nn.Identity()
        self.position_encoding = PositionEmbeddingSine(out_dim)

    def forward(
        self, pix_feat: torch.Tensor, masks: torch.Tensor, skip_mask_sigmoid: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not skip_mask_sigmoid:
            masks = torch.sigmoid(masks)
        masks = self.mask_downsampler(masks)
        x = self.pix_feat_proj(pix_feat.to(masks.device)) + masks
        x = self.out_proj(self.fuser(x))
        return x, self.position_encoding(x)
