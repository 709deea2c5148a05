"""Prompt encoder: points and box corners become sparse tokens, a mask prompt becomes a dense map."""

from __future__ import annotations

import torch
from torch import nn

from .common import LayerNorm2d
from .position_encoding import PositionEmbeddingRandom

# Point labels understood by the model: -1 padding, 0 negative, 1 positive, 2/3 box corners.
NUM_POINT_LABELS = 4


class PromptEncoder(nn.Module):
    def __init__(
        self,
        embed_dim: int,
        image_embedding_size: tuple[int, int],
        input_image_size: tuple[int, int],
        mask_in_chans: int,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.input_image_size = input_image_size
        self.image_embedding_size = image_embedding_size
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(NUM_POINT_LABELS))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_input_size = (4 * image_embedding_size[0], 4 * image_embedding_size[1])
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)
        self._dense_pe: dict[torch.device, torch.Tensor] = {}

    def get_dense_pe(self) -> torch.Tensor:
        """(1, C, h, w) encoding of the image-embedding grid; cached, it never changes after loading."""
        dev = self.pe_layer.positional_encoding_gaussian_matrix.device
        pe = self._dense_pe.get(dev)
        if pe is None or pe.dtype != self.pe_layer.positional_encoding_gaussian_matrix.dtype:
            pe = self.pe_layer(self.image_embedding_size).unsqueeze(0)
            self._dense_pe[dev] = pe
        return pe

    def _load_from_state_dict(self, *args, **kwargs):  # noqa: D401 - torch hook
        self._dense_pe.clear()  # the Gaussian matrix changes with the weights
        return super()._load_from_state_dict(*args, **kwargs)

    def embed_points(self, points: torch.Tensor, labels: torch.Tensor, pad: bool) -> torch.Tensor:
        """(B, N, 2) pixel coords in the model frame and (B, N) labels -> (B, N(+1), C) tokens."""
        points = points + 0.5  # pixel centres
        if pad:
            # a padding point stands in for the missing box, as in training
            points = torch.cat([points, points.new_zeros(points.shape[0], 1, 2)], dim=1)
            labels = torch.cat([labels, -labels.new_ones(labels.shape[0], 1)], dim=1)
        pe = self.pe_layer.forward_with_coords(points, self.input_image_size)
        # label -1 replaces the encoding by the padding embedding; labels 0..3 add theirs
        table = torch.cat(
            [self.not_a_point_embed.weight]
            + [e.weight for e in self.point_embeddings]
            + [pe.new_zeros(1, self.embed_dim)]
        )
        labels = labels.long()
        valid = (labels >= -1) & (labels < NUM_POINT_LABELS)
        index = torch.where(valid, labels + 1, torch.full_like(labels, NUM_POINT_LABELS + 1))
        pe = torch.where((labels == -1).unsqueeze(-1), torch.zeros_like(pe), pe)
        return pe + table[index]

    def embed_boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """(B, 4) boxes x0, y0, x1, y1 -> (B, 2, C) corner tokens."""
        corners = (boxes + 0.5).reshape(-1, 2, 2)
        pe = self.pe_layer.forward_with_coords(corners, self.input_image_size)
        return pe + torch.cat([self.point_embeddings[2].weight, self.point_embeddings[3].weight])[None]

    def forward(
        self,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        masks: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns sparse (B, N, C) and dense (B, C, h, w) embeddings.

        masks, when given, are (B, 1, 4h, 4w) low-resolution logits.
        """
        if points is not None:
            bs = points[0].shape[0]
        elif boxes is not None:
            bs = boxes.shape[0]
        elif masks is not None:
            bs = masks.shape[0]
        else:
            bs = 1
        weight = self.no_mask_embed.weight
        sparse = [weight.new_empty(bs, 0, self.embed_dim)]
        if points is not None:
            sparse.append(self.embed_points(points[0], points[1], pad=boxes is None))
        if boxes is not None:
            sparse.append(self.embed_boxes(boxes))
        sparse_embeddings = torch.cat(sparse, dim=1)
        if masks is not None:
            dense = self.mask_downscaling(masks)
        else:
            h, w = self.image_embedding_size
            dense = weight.reshape(1, -1, 1, 1).expand(bs, -1, h, w)
        return sparse_embeddings, dense
