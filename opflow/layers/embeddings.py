"""Positional embeddings appended to the input channels."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["GridEmbedding"]


class GridEmbedding(nn.Module):
    """Append the grid coordinates of each point as ``n_dim`` extra channels.

    Point ``j`` of ``n`` along an axis with boundaries ``(lo, hi)`` gets ``lo + (hi - lo) j / n``
    (periodic grid: the right end is not a grid point). ``(B, C, *s) -> (B, C + n_dim, *s)``.
    """

    def __init__(self, n_dim: int, boundaries: list[tuple[float, float]] | None = None):
        super().__init__()
        self.n_dim = n_dim
        self.boundaries = boundaries or [(0.0, 1.0)] * n_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, *spatial = x.shape
        axes = [
            torch.arange(n, device=x.device, dtype=x.dtype) * ((hi - lo) / n) + lo
            for n, (lo, hi) in zip(spatial, self.boundaries)
        ]
        grids = torch.meshgrid(*axes, indexing="ij")
        coords = torch.stack(grids)[None].expand(b, -1, *spatial)
        return torch.cat((x, coords), dim=1)
