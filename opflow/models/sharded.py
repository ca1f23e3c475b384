"""An FNO or SFNO run on a field sharded along its first spatial axis across a process group.

Every layer of the FNO skeleton but the spectral convolutions is pointwise, so on a shard of
rows it is the same layer on fewer points: the positional embedding takes the shard's rows of
the global grid, the lifting, skips, channel MLPs and projection run locally, and each
block's spectral conv is sharded — :class:`~opflow.spectral.sharded.ShardedSpectralConv` of
a planar conv, :class:`~opflow.spectral.sphere.sharded.ShardedSphericalConv` of a spherical
one (latitudes sharded) — inside the block's own composition
(:meth:`~opflow.layers.fno_block.FNOBlock.compose`). The module holds the FNO it wraps: the
parameters, and checkpoints, are the unsharded model's, and so a model trained sharded loads
unsharded and vice versa. Each rank's parameter gradients are its points' (and modes') share,
to be summed over the group.

Not yet sharded (issue #24): domain padding, local branches (LocalNO, SFNO's DISCO branch:
their stencils need the neighbouring ranks' rows) and output grids other than the input's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.models.skeleton import LiftBlocksProject
from opflow.spectral.conv import SpectralConv
from opflow.spectral.sharded import ShardedSpectralConv, group_position, shard_bounds
from opflow.spectral.sphere.conv import SphericalConv
from opflow.spectral.sphere.sharded import ShardedSphericalConv

__all__ = ["ShardedFNO"]


class ShardedFNO(nn.Module):
    """``model`` (an FNO or SFNO) on this rank's rows ``(B, in_channels, n_0 / P, n_1, ...)``
    of a field on ``grid`` (given to ``forward``, or fixed at construction); returns the same
    rows of the output ``(B, out_channels, n_0 / P, n_1, ...)``."""

    def __init__(
        self,
        model: LiftBlocksProject,
        group: dist.ProcessGroup | None = None,
        grid: Sequence[int] | None = None,
    ):
        super().__init__()
        unsupported = [
            name
            for name, present in (
                ("domain padding", getattr(model, "domain_padding", None) is not None),
                ("local branches", any(block.local is not None for block in model.blocks)),
            )
            if present
        ]
        if unsupported:
            raise ConfigError(
                f"a sharded {type(model).__name__} with {' and '.join(unsupported)}",
                "a model without domain padding or local branches",
                "train this model with data parallelism only (training.spatial_parallel: 1)",
            )
        self.model, self.group = model, group
        self.grid = None if grid is None else tuple(int(n) for n in grid)
        self.convs = nn.ModuleList(_sharded(block.conv, group) for block in model.blocks)

    def forward(self, x: torch.Tensor, grid: Sequence[int] | None = None) -> torch.Tensor:
        model = self.model
        rank, size = group_position(self.group)
        grid = self.grid if grid is None else tuple(int(n) for n in grid)
        if grid is None:
            raise ShapeError(
                "a sharded model called without the field's grid",
                "grid=(n_0, n_1, ...), the whole field's spatial shape",
                "pass grid=, or build ShardedFNO(model, group, grid)",
            )
        if model.positional_embedding is not None:
            rows = shard_bounds(grid[0], size)[rank]
            x = model.positional_embedding(x, grid=grid, rows=rows)
        x = model.lifting(x)
        for i, (block, conv) in enumerate(zip(model.blocks, self.convs)):
            last = i == model.n_layers - 1
            x = block.compose(x, lambda t, conv=conv: conv(t, grid), last=last)
        return model.projection(x)


def _sharded(conv: nn.Module, group: dist.ProcessGroup | None) -> nn.Module:
    if isinstance(conv, SpectralConv):
        return ShardedSpectralConv(conv, group)
    if isinstance(conv, SphericalConv):
        return ShardedSphericalConv(conv, group)
    raise ConfigError(
        f"a sharded model with a {type(conv).__name__} in its blocks",
        "SpectralConv or SphericalConv blocks (FNO, SFNO)",
        "train this model with data parallelism only (training.spatial_parallel: 1)",
    )
