"""Position encodings: 2-D sine (feature maps), random Fourier (prompts) and axial RoPE (memory attention)."""

from __future__ import annotations

import math

import torch
from torch import nn


def _sine_table(positions: torch.Tensor, num_feats: int, temperature: float) -> torch.Tensor:
    """Interleaved sin/cos encoding of 1-D positions: (N,) -> (N, num_feats)."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=positions.device)
    dim_t = temperature ** (2 * (dim_t // 2) / num_feats)
    angles = positions[:, None] / dim_t
    # even channels take sin, odd channels cos, interleaved
    return torch.stack((angles[:, 0::2].sin(), angles[:, 1::2].cos()), dim=2).flatten(1)


class PositionEmbeddingSine(nn.Module):
    """DETR-style sine encoding of a feature map's (y, x) grid, normalized to [0, 2*pi].

    ``forward(x)`` with x of shape (B, C, H, W) returns (B, num_pos_feats, H, W). The table
    depends only on (H, W), so it is computed once per size and device and then expanded.
    """

    def __init__(self, num_pos_feats: int, temperature: float = 10000.0, scale: float = 2 * math.pi) -> None:
        super().__init__()
        if num_pos_feats % 2:
            raise ValueError("num_pos_feats must be even")
        self.half = num_pos_feats // 2
        self.temperature = temperature
        self.scale = scale
        self._cache: dict[tuple, torch.Tensor] = {}

    def table(self, h: int, w: int, device: torch.device) -> torch.Tensor:
        """(num_pos_feats, H, W) encoding, float32."""
        key = (h, w, torch.device(device))
        pe = self._cache.get(key)
        if pe is None:
            eps = 1e-6
            ys = torch.arange(1, h + 1, dtype=torch.float32, device=device)
            xs = torch.arange(1, w + 1, dtype=torch.float32, device=device)
            ys = ys / (ys[-1:] + eps) * self.scale
            xs = xs / (xs[-1:] + eps) * self.scale
            pe_y = _sine_table(ys, self.half, self.temperature)  # (H, half)
            pe_x = _sine_table(xs, self.half, self.temperature)  # (W, half)
            pe = (
                torch.cat(
                    (pe_y[:, None, :].expand(h, w, self.half), pe_x[None, :, :].expand(h, w, self.half)),
                    dim=2,
                )
                .permute(2, 0, 1)
                .contiguous()
            )
            self._cache[key] = pe
        return pe

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pe = self.table(x.shape[-2], x.shape[-1], x.device)
        if x.dtype != pe.dtype:
            # a cast of the level-0 table is 64 MiB of copying per image: keep one per dtype too
            key = (x.shape[-2], x.shape[-1], torch.device(x.device), x.dtype)
            cast = self._cache.get(key)
            if cast is None:
                cast = self._cache[key] = pe.to(x.dtype)
            pe = cast
        return pe.unsqueeze(0).expand(x.shape[0], -1, -1, -1)


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of normalized (x, y) coordinates (SAM's prompt encoding)."""

    def __init__(self, num_pos_feats: int = 64, scale: float | None = None) -> None:
        super().__init__()
        scale = 1.0 if scale is None or scale <= 0.0 else scale
        self.register_buffer("positional_encoding_gaussian_matrix", scale * torch.randn((2, num_pos_feats)))

    def _encode(self, coords: torch.Tensor) -> torch.Tensor:
        """(..., 2) coordinates in [0, 1] -> (..., 2 * num_pos_feats)."""
        coords = 2 * coords - 1
        coords = coords @ self.positional_encoding_gaussian_matrix
        coords = 2 * math.pi * coords
        return torch.cat([torch.sin(coords), torch.cos(coords)], dim=-1)

    def forward(self, size: tuple[int, int]) -> torch.Tensor:
        """Dense encoding of an (h, w) grid of pixel centres: returns (C, h, w)."""
        h, w = size
        device = self.positional_encoding_gaussian_matrix.device
        ys = (torch.arange(h, device=device, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=device, dtype=torch.float32) + 0.5) / w
        grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], dim=-1)
        return self._encode(grid).permute(2, 0, 1)

    def forward_with_coords(self, coords: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
        """Encode (B, N, 2) pixel coordinates (x, y) of an image of size (H, W)."""
        norm = torch.stack([coords[..., 0] / image_size[1], coords[..., 1] / image_size[0]], dim=-1)
        return self._encode(norm.float())


# --- axial rotary position encoding ----------------------------------------------------------


def axial_rope_angles(dim: int, end_x: int, end_y: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles for 2-D axial RoPE over an end_y x end_x grid (row-major).

    Returns (end_x * end_y, dim // 2): the first dim // 4 columns rotate with x, the rest with y.
    """
    freqs = 1.0 / (theta ** (torch.arange(0, dim, 4)[: dim // 4].float() / dim))
    t = torch.arange(end_x * end_y, dtype=torch.float32)
    t_x = t % end_x
    t_y = torch.div(t, end_x, rounding_mode="floor")
    return torch.cat([torch.outer(t_x, freqs), torch.outer(t_y, freqs)], dim=-1)


def rope_rotations(angles: torch.Tensor) -> torch.Tensor:
    """Unit complex numbers e^(i * angle) (N, D // 2) for :func:`apply_rope`, from angles (N, D // 2)."""
    return torch.polar(torch.ones_like(angles), angles)


def apply_rope(x: torch.Tensor, rotations: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """Rotate consecutive channel pairs of x (B, heads, N, D) by ``rotations`` (n, D // 2, complex),
    where N is n or a multiple of it (keys holding several frames of the grid: each frame gets the
    same rotations, broadcast, never tiled in memory): each pair (a, b) is the complex number a + ib,
    multiplied by its rotation, in float32 and cast back to x's dtype. One complex product per pair
    instead of four real products and their sums (~2.5x faster on the ~29k memory keys of a tracked
    frame). Written into ``out`` when given."""
    n = rotations.shape[0]
    if n == 0 or x.shape[-2] % n or 2 * rotations.shape[-1] != x.shape[-1]:
        raise ValueError(
            f"apply_rope: {x.shape[-2]} tokens of width {x.shape[-1]} against rotations for {n} positions "
            f"of width {2 * rotations.shape[-1]}: the tokens must be whole frames of the rotations' grid"
        )
    xc = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)).contiguous())  # (B, heads, N, D // 2)
    frames = xc.unflatten(-2, (-1, n))  # (B, heads, N // n, n, D // 2)
    rotated = torch.view_as_real(frames * rotations).flatten(-2).flatten(-3, -2)
    if out is None:
        return rotated.type_as(x)
    return out.copy_(rotated)


def rope_cos_sin(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) of the angles (N, D // 2) for :func:`apply_rope_real`."""
    return angles.cos(), angles.sin()


def apply_rope_real(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """:func:`apply_rope` in real arithmetic: each channel pair (a, b) of x (B, heads, N, D) becomes
    (a cos - b sin, a sin + b cos), with cos and sin (n, D // 2) broadcast over the frames when N is a
    multiple of n. The same numbers up to float rounding; no complex tensors (ONNX has none)."""
    n = cos.shape[0]
    pairs = x.float().unflatten(-1, (-1, 2)).unflatten(-3, (-1, n))  # (B, heads, N // n, n, D // 2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([a * cos - b * sin, a * sin + b * cos], dim=-1)
    return rotated.flatten(-2).flatten(-3, -2).type_as(x)
