r"""Domain-parallel spherical convolution: one field's latitudes sharded across a process group.

Rank ``r`` of ``P`` holds latitudes ``shard_bounds(nlat, P)[r]`` and every longitude. As for
the plane (:mod:`opflow.spectral.sharded`), per axis:

1. longitude analysis (truncated real DFT, orders ``m < mmax``): local;
2. **transpose** (all-to-all): every latitude of a shard of the orders;
3. the Legendre step per order — quadrature-weighted analysis over all latitudes, the
   layer's ``K`` on the rank's orders (:meth:`SphericalConv.mix`), synthesis onto the output
   grid's latitudes;
4. **transpose back**: the rank's output latitudes, every order;
5. longitude synthesis onto the output grid, the bias.

The Legendre matrices of an order need every latitude, which is why the orders, not the
latitudes, are split while it runs. The layer holds the :class:`SphericalConv` it wraps
(parameters and checkpoints are shared); orders carry unequal Legendre work (order ``m`` has
``lmax - m`` non-zero degrees), so the split by count is not a split by work.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from opflow.errors import ShapeError
from opflow.spectral.sharded import exchange, group_position, shard_bounds, shard_sizes
from opflow.spectral.sphere import transform as sht_ops
from opflow.spectral.sphere.conv import SphericalConv
from opflow.spectral.sphere.grid import SphereGrid, as_output_grid

__all__ = ["ShardedSphericalConv"]


class ShardedSphericalConv(nn.Module):
    """``conv`` applied to a field whose latitudes are sharded across ``group``.

    Shapes
    ------
    ``x``: this rank's latitudes ``(B, in_channels, nlat / P, nlon)`` of a field on ``grid``
    (a :class:`SphereGrid`, or ``(nlat, nlon)`` of the layer's grid kind); returns the rank's
    latitudes ``(B, out_channels, nlat' / P, nlon')`` of the output on ``output_shape``
    (default ``grid``), shards by :func:`~opflow.spectral.sharded.shard_bounds`.
    """

    def __init__(self, conv: SphericalConv, group: dist.ProcessGroup | None = None):
        super().__init__()
        self.conv = conv
        self.group = group

    def forward(
        self,
        x: torch.Tensor,
        grid: SphereGrid | tuple[int, int],
        output_shape: SphereGrid | tuple[int, int] | None = None,
    ) -> torch.Tensor:
        conv = self.conv
        rank, size = group_position(self.group)
        grid = grid if isinstance(grid, SphereGrid) else SphereGrid(*grid, conv.grid_kind)
        out_grid = as_output_grid(grid, output_shape)
        self._check(x, grid, out_grid, rank, size)
        sht_ops.check_band_limit(grid, conv.lmax, conv.mmax)
        batch, mmax, dtype, device = x.shape[0], conv.mmax, x.dtype, x.device
        rows_in, rows_out = shard_sizes(grid.nlat, size), shard_sizes(out_grid.nlat, size)
        order_sizes = shard_sizes(mmax, size)
        orders = slice(*shard_bounds(mmax, size)[rank])

        # 1. longitudes: (B, C, nlat_r, nlon) -> (nlat_r, mmax, 2*B*C)
        longitude = sht_ops.longitude_analysis(grid.nlon, mmax, dtype, device)
        t = (x @ longitude.T).view(batch, conv.in_channels, rows_in[rank], mmax, 2)
        t = t.permute(2, 3, 4, 0, 1).reshape(rows_in[rank], mmax, -1)
        # 2. every latitude of the rank's orders: (m_r, nlat, 2*B*C)
        t = exchange(t, rows_in, order_sizes, self.group)
        # 3. Legendre analysis, K, Legendre synthesis onto the output latitudes
        analysis = sht_ops.legendre_analysis(grid, conv.lmax, mmax, dtype, device)[orders]
        spec = torch.bmm(analysis, t).view(-1, conv.lmax, 2, batch, conv.in_channels)
        spec = conv.mix(spec, orders)
        synthesis = sht_ops.legendre_synthesis(out_grid, conv.lmax, mmax, dtype, device)
        t = torch.bmm(synthesis[orders], spec.reshape(spec.shape[0], conv.lmax, -1))
        # 4. the rank's output latitudes, every order: (nlat'_r, mmax, 2*B*C_out)
        t = exchange(t, order_sizes, rows_out, self.group)
        # 5. longitudes onto the output grid
        t = t.view(rows_out[rank], mmax, 2, batch, conv.out_channels).permute(3, 4, 0, 1, 2)
        t = t.reshape(batch, conv.out_channels, rows_out[rank], 2 * mmax)
        y = t @ sht_ops.longitude_synthesis(out_grid.nlon, mmax, dtype, device).T
        return y if conv.bias is None else y + conv.bias

    def _check(self, x, grid: SphereGrid, out_grid: SphereGrid, rank: int, size: int) -> None:
        conv = self.conv
        expected = (x.shape[0], conv.in_channels, shard_sizes(grid.nlat, size)[rank], grid.nlon)
        if x.ndim != 4 or tuple(x.shape) != expected:
            raise ShapeError(
                f"rank {rank} of {size} got a shard of shape {tuple(x.shape)} of the "
                f"{grid.nlat} x {grid.nlon} grid",
                f"{expected}: latitudes {shard_bounds(grid.nlat, size)[rank]}",
                "split the field's latitudes with opflow.spectral.sharded.shard_bounds",
            )
        if min(grid.nlat, out_grid.nlat) < size or conv.mmax < size:
            raise ShapeError(
                f"{grid.nlat} -> {out_grid.nlat} latitudes and {conv.mmax} orders over "
                f"{size} ranks",
                "at least one latitude and one order per rank",
                "use fewer ranks for this grid",
            )
