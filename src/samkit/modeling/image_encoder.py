"""Image encoder: Hiera trunk + FPN neck, producing three feature levels with sine position encodings."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..configs import ModelConfig
from .common import pointwise_conv
from .hiera import Hiera
from .position_encoding import PositionEmbeddingSine


@dataclass
class BackboneOutput:
    """Feature pyramid of one image batch, highest resolution first.

    features[i]: (B, d_model, H_i, W_i); pos[i]: the matching (B, d_model, H_i, W_i) encoding.
    With ``scalp=1`` at 1024 px the sizes are 256, 128 and 64.
    """

    features: list[torch.Tensor]
    pos: list[torch.Tensor]


class _Lateral(nn.Module):
    """1x1 lateral convolution (kept in a wrapper so the key reads ``convs.{i}.conv.weight``)."""

    def __init__(self, in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_dim, out_dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32:
            return self.conv(x)  # the exact path computes exactly what the reference computes
        return pointwise_conv(self.conv, x)  # reduced precision (the fast path): no layout copies


class FpnNeck(nn.Module):
    """Feature pyramid without output convs; top-down fusion only on ``fpn_top_down_levels``."""

    def __init__(
        self,
        d_model: int,
        backbone_channel_list: list[int],
        top_down_levels: tuple[int, ...],
        interp_mode: str = "nearest",
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.backbone_channel_list = list(backbone_channel_list)
        # convs[0] serves the lowest-resolution level, as in the official checkpoints
        self.convs = nn.ModuleList(_Lateral(c, d_model) for c in backbone_channel_list)
        self.top_down_levels = set(top_down_levels)
        self.interp_mode = interp_mode
        self.position_encoding = PositionEmbeddingSine(d_model)

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        n = len(self.convs) - 1
        out: list[torch.Tensor] = [None] * len(xs)  # type: ignore[list-item]
        prev = None
        for i in range(n, -1, -1):  # lowest resolution first
            lateral = self.convs[n - i](xs[i])
            if i in self.top_down_levels and prev is not None:
                up = F.interpolate(
                    prev.float(),
                    scale_factor=2.0,
                    mode=self.interp_mode,
                    align_corners=None if self.interp_mode == "nearest" else False,
                )
                prev = lateral + up
            else:
                prev = lateral
            out[i] = prev
        return out


class ImageEncoder(nn.Module):
    """Trunk + neck. ``forward(images (B, 3, S, S))`` -> :class:`BackboneOutput`."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.trunk = Hiera(cfg.hiera)
        self.neck = FpnNeck(
            cfg.d_model, list(cfg.hiera.channel_list), cfg.fpn_top_down_levels, cfg.fpn_interp_model
        )
        if self.trunk.channel_list != self.neck.backbone_channel_list:
            raise ValueError(
                f"trunk channels {self.trunk.channel_list} != neck {self.neck.backbone_channel_list}"
            )
        self.scalp = cfg.scalp

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        features = self.neck(self.trunk(images))
        if self.scalp > 0:
            # the lowest-resolution level only feeds the top-down path; the heads never see it
            features = features[: -self.scalp]
        pos = [self.neck.position_encoding(x) for x in features]
        return BackboneOutput(features=features, pos=pos)
