"""An FNO run on a field sharded along its first spatial axis across a process group.

Every layer of an FNO but the spectral convolutions is pointwise, so on a shard of rows it is
the same layer on fewer points: the positional embedding takes the shard's rows of the global
grid, the lifting, skips, channel MLPs and projection run locally, and each block's spectral
conv is a :class:`~opflow.spectral.sharded.ShardedSpectralConv` of the block's own conv
(:meth:`~opflow.layers.fno_block.FNOBlock.compose`). The module holds the FNO it wraps: the
parameters, and checkpoints, are the unsharded model's, and so a model trained sharded loads
unsharded and vice versa. Each rank's parameter gradients are its points' (and modes') share,
to be summed over the group.

Not yet sharded (issue #24): domain padding, local branches (LocalNO: their stencils need the
neighbouring ranks' rows), output grids other than the input's, and SFNO as a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from opflow.errors import ConfigError
from opflow.models.fno import FNO
from opflow.spectral.sharded import ShardedSpectralConv, group_position, shard_bounds

__all__ = ["ShardedFNO"]


class ShardedFNO(nn.Module):
    """``model`` on this rank's rows ``(B, in_channels, n_0 / P, n_1, ...)`` of a field on
    ``grid``; returns the same rows of the output ``(B, out_channels, n_0 / P, n_1, ...)``."""

    def __init__(self, model: FNO, group: dist.ProcessGroup | None = None):
        super().__init__()
        unsupported = [
            name
            for name, present in (
                ("domain padding", model.domain_padding is not None),
                ("local branches", any(block.local is not None for block in model.blocks)),
            )
            if present
        ]
        if unsupported:
            raise ConfigError(
                f"a sharded FNO with {' and '.join(unsupported)}",
                "an FNO without domain padding or local branches",
                "train this model with data parallelism only (training.spatial_parallel: 1)",
            )
        self.model, self.group = model, group
        self.convs = nn.ModuleList(ShardedSpectralConv(block.conv, group) for block in model.blocks)

    def forward(self, x: torch.Tensor, grid: Sequence[int]) -> torch.Tensor:
        model = self.model
        rank, size = group_position(self.group)
        grid = tuple(int(n) for n in grid)
        if model.positional_embedding is not None:
            rows = shard_bounds(grid[0], size)[rank]
            x = model.positional_embedding(x, grid=grid, rows=rows)
        x = model.lifting(x)
        for i, (block, conv) in enumerate(zip(model.blocks, self.convs)):
            last = i == model.n_layers - 1
            x = block.compose(x, lambda t, conv=conv: conv(t, grid), last=last)
        return model.projection(x)
