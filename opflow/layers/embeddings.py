"""Positional embeddings appended to the input channels."""

from __future__ import annotations

import math
from collections.abc import Sequence

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

    def forward(
        self,
        x: torch.Tensor,
        grid: Sequence[int] | None = None,
        rows: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """``x`` is the whole field, or (``grid``, ``rows``) rows ``rows`` of axis 0 of a field
        on ``grid``: the shard of one process when the field is split across several."""
        b, _, *spatial = x.shape
        grid = tuple(spatial) if grid is None else tuple(grid)
        ranges = [(0, n) for n in grid] if rows is None else [rows, *((0, n) for n in grid[1:])]
        indices = [
            torch.arange(start, stop, device=x.device, dtype=x.dtype) for start, stop in ranges
        ]
        if self.periodic:
            angles = [j * (2 * math.pi / n) for j, n in zip(indices, grid)]
            theta = torch.stack(torch.meshgrid(*angles, indexing="ij"))
            coords = torch.cat((theta.sin(), theta.cos()))
            return torch.cat((x, coords[None].expand(b, -1, *spatial)), dim=1)
        axes = [j * ((hi - lo) / n) + lo for j, n, (lo, hi) in zip(indices, grid, self.boundaries)]
        grids = torch.meshgrid(*axes, indexing="ij")
        coords = torch.stack(grids)[None].expand(b, -1, *spatial)
        return torch.cat((x, coords), dim=1)
