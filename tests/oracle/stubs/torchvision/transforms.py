"""Stand-ins for torchvision.transforms.{Resize, Normalize, ToTensor} (tensor paths only)."""

from typing import List

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class Resize(nn.Module):
    """Bilinear resize with antialiasing, as torchvision does for float tensors."""

    def __init__(self, size, interpolation=None, max_size=None, antialias=True):
        super().__init__()
        if isinstance(size, int):
            size = (size, size)
        self.size: List[int] = [int(size[0]), int(size[1])]

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        batched = img.dim() == 4
        x = img if batched else img.unsqueeze(0)
        out = F.interpolate(x, size=self.size, mode="bilinear", align_corners=False, antialias=True)
        return out if batched else out.squeeze(0)


class Normalize(nn.Module):
    def __init__(self, mean, std, inplace=False):
        super().__init__()
        self.mean: List[float] = [float(m) for m in mean]
        self.std: List[float] = [float(s) for s in std]

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=tensor.dtype, device=tensor.device).view(-1, 1, 1)
        return (tensor - mean) / std


class ToTensor:
    """HWC uint8 array or PIL image -> CHW float tensor in [0, 1]."""

    def __call__(self, pic):
        arr = np.array(pic)
        if arr.ndim == 2:
            arr = arr[:, :, None]
        img = torch.from_numpy(np.ascontiguousarray(arr.transpose((2, 0, 1)))).contiguous()
        if img.dtype == torch.uint8:
            return img.to(dtype=torch.get_default_dtype()).div(255)
        return img
