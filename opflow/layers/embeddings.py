"""Positional embeddings appended to the input channels."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["GridEmbedding"]


class GridEmbedding(nn.Module):
    """Append the grid coordinates of each point as extra channels.

    Point ``j`` of ``n`` along an axis with boundaries ``(lo, hi)`` has the coordinate
    ``u = lo + (hi - lo) j / n`` (periodic grid: the right end is not a grid point).
    ``periodic=False`` appends ``u`` itself, ``n_dim`` channels (neuraloperator's grid
    embedding); ``periodic=True`` appends ``sin θ, cos θ`` with ``θ = 2π (u - lo) / (hi - lo)``,
    ``2 n_dim`` channels, which are continuous across the periodic seam where ``u`` jumps from
    ``hi`` back to ``lo``. ``(B, C, *s) -> (B, C + channels, *s)``.
    """

    def __init__(
        self,
        n_dim: int,
        boundaries: list[tuple[float, float]] | None = None,
        periodic: bool = False,
    ):
        super().__init__()
        self.n_dim, self.periodic = n_dim, periodic
        self.boundaries = boundaries or [(0.0, 1.0)] * n_dim

    @property
    def channels(self) -> int:
        """Number of channels appended."""
        return 2 * self.n_dim if self.periodic else self.n_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, *spatial = x.shape
        if self.periodic:
            angles = [
                torch.arange(n, device=x.device, dtype=x.dtype) * (2 * math.pi / n) for n in spatial
            ]
            theta = torch.stack(torch.meshgrid(*angles, indexing="ij"))
            coords = torch.cat((theta.sin(), theta.cos()))
            return torch.cat((x, coords[None].expand(b, -1, *spatial)), dim=1)
        axes = [
            torch.arange(n, device=x.device, dtype=x.dtype) * ((hi - lo) / n) + lo
            for n, (lo, hi) in zip(spatial, self.boundaries)
        ]
        grids = torch.meshgrid(*axes, indexing="ij")
        coords = torch.stack(grids)[None].expand(b, -1, *spatial)
        return torch.cat((x, coords), dim=1)
