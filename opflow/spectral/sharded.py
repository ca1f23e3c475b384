r"""Domain-parallel spectral convolution: one field sharded along its first axis.

A field too large for one device is split along its first spatial axis across a process
group: rank ``r`` of ``P`` holds rows ``shard_bounds(n_0, P)[r]`` (sizes differ by at most one,
the first ``n_0 mod P`` ranks one larger; odd sizes and sizes not divisible by ``P`` are
allowed) and the whole of every other axis. :class:`ShardedSpectralConv` applies a
:class:`~opflow.spectral.SpectralConv`'s weights to such a field, per axis:

1. analysis along the axes the rank holds whole (``1 .. d-1``): local, keeps only their
   kept modes, ``(B, C, n_0/P, n_1, ...) -> (n_0/P, M_rest)`` per ``(b, c)``;
2. **transpose** (one all-to-all): axis 0 becomes whole, the ``M_rest`` kept modes of the
   other axes are sharded instead, ``-> (n_0, M_rest/P)``;
3. analysis along axis 0, mixing by the rank's slice of the weights ``W_k`` (``in x out`` per
   kept wavenumber), synthesis along axis 0 onto the output grid's ``n_0'`` points;
4. **transpose back** (the reverse all-to-all), ``-> (n_0'/P, M_rest)``;
5. synthesis along the other axes onto the output grid, the real part, the bias.

.. math::

    y = \mathcal{F}^{-1}_{1..d-1}\, T^{-1} \mathcal{F}^{-1}_{0}\, W\, \mathcal{F}_0\, T\,
        \mathcal{F}_{1..d-1}\, x + b

Only modes kept along axes ``1..d-1`` cross the network (axis 0 travels at full length: it is
transformed after the transpose). Autograd runs through the collectives (the backward of an
all-to-all is the reverse all-to-all). The layer holds the very ``SpectralConv`` it wraps, so
the parameters, and checkpoints, are those of the unsharded model; each rank's weight gradient
covers only its modes and is summed over the group like any other gradient.

The transforms are the complex matrices of :class:`opflow.spectral.axis.FourierAxis`
(``torch`` matmuls: any device, any backend-free dtype), so this is checked against the
unsharded layer, not against a second implementation.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from opflow.errors import ShapeError
from opflow.spectral.axis import FourierAxis, apply_along, fourier_axes
from opflow.spectral.cache import constant_cache
from opflow.spectral.conv import SpectralConv
from opflow.spectral.fourier import check_grid

__all__ = ["ShardedSpectralConv", "exchange", "group_position", "shard_bounds", "shard_sizes"]


def shard_sizes(n: int, parts: int) -> list[int]:
    """Sizes of ``n`` items split into ``parts`` contiguous shards, the first ``n mod parts``
    one larger (as :func:`torch.tensor_split`)."""
    return [n // parts + (1 if r < n % parts else 0) for r in range(parts)]


def shard_bounds(n: int, parts: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each shard of :func:`shard_sizes`."""
    sizes = shard_sizes(n, parts)
    return [(stop - size, stop) for stop, size in zip(itertools.accumulate(sizes), sizes)]


@constant_cache(maxsize=64)
def _analysis(basis: FourierAxis, n: int, dtype: torch.dtype, device: torch.device):
    return basis.analysis(n).to(dtype=dtype, device=device)


@constant_cache(maxsize=64)
def _synthesis(basis: FourierAxis, n: int, dtype: torch.dtype, device: torch.device):
    return basis.synthesis(n).to(dtype=dtype, device=device)


def _complex(dtype: torch.dtype) -> torch.dtype:
    return torch.complex128 if dtype == torch.float64 else torch.complex64


def _all_to_all(
    x: torch.Tensor, send: list[int], receive: list[int], group: dist.ProcessGroup | None
) -> torch.Tensor:
    """Rows ``x[sum(send[:q]) : sum(send[:q+1])]`` go to rank ``q``; returns the rows received,
    rank by rank. Differentiable (the backward is the reverse exchange). torch's functional
    collective, the one DTensor uses: gloo and NCCL, uneven splits."""
    from torch.distributed import _functional_collectives as collectives

    group = group if group is not None else dist.group.WORLD
    out = collectives.all_to_all_single_autograd(x.contiguous(), receive, send, group)
    return collectives.wait_tensor(out)


def group_position(group: dist.ProcessGroup | None) -> tuple[int, int]:
    """``(rank, size)`` of this process in ``group`` (the world by default); ``(0, 1)``
    where no process group is initialised."""
    if not dist.is_available() or not dist.is_initialized():
        return 0, 1
    return dist.get_rank(group), dist.get_world_size(group)


def exchange(
    t: torch.Tensor, rows: list[int], columns: list[int], group: dist.ProcessGroup | None
) -> torch.Tensor:
    """The transpose of a block-sharded matrix: ``(rows[rank], sum(columns), F)`` ->
    ``(columns[rank], sum(rows), F)``. Each rank holds a shard of the rows of every column
    before and every row of a shard of the columns after; real or complex ``t``."""
    rank, size = group_position(group)
    if size == 1:
        return t.transpose(0, 1)
    is_complex = t.is_complex()
    parts = torch.view_as_real(t) if is_complex else t
    features = parts.shape[2:]
    # to rank q: its columns of this rank's rows, as one (columns[q], rows[rank]) block
    send = parts.transpose(0, 1).reshape(-1, *features)
    received = _all_to_all(
        send, [c * rows[rank] for c in columns], [columns[rank] * r for r in rows], group
    )
    blocks = [
        block.reshape(columns[rank], r, *features)
        for block, r in zip(received.split([columns[rank] * r for r in rows]), rows)
    ]
    out = torch.cat(blocks, dim=1)
    return torch.view_as_complex(out) if is_complex else out


class ShardedSpectralConv(nn.Module):
    """``conv`` applied to a field sharded along its first spatial axis across ``group``.

    Parameters
    ----------
    conv : SpectralConv
        The layer whose weights and bias are used (shared, not copied).
    group : torch.distributed.ProcessGroup, optional
        The ranks that share one field (default: the whole world). Without an initialised
        process group the layer runs on one rank: the field is whole.

    Shapes
    ------
    ``x``: this rank's shard ``(B, in_channels, n_0 / P, n_1, ..., n_{d-1})`` of a field on
    ``grid = (n_0, ..., n_{d-1})``; returns the rank's shard ``(B, out_channels, n_0' / P,
    n_1', ...)`` of the output on ``output_shape`` (default ``grid``), shards by
    :func:`shard_bounds`.
    """

    def __init__(self, conv: SpectralConv, group: dist.ProcessGroup | None = None):
        super().__init__()
        self.conv = conv
        self.group = group

    @property
    def world(self) -> tuple[int, int]:
        """``(rank, size)`` of this process in the group, ``(0, 1)`` without one."""
        return group_position(self.group)

    def forward(
        self,
        x: torch.Tensor,
        grid: Sequence[int],
        output_shape: Sequence[int] | None = None,
    ) -> torch.Tensor:
        conv, rank, size = self.conv, *self.world
        grid = tuple(int(n) for n in grid)
        out_grid = grid if output_shape is None else tuple(int(n) for n in output_shape)
        self._check(x, grid, out_grid, rank, size)
        batch, d = x.shape[0], conv.n_dim
        axes = fourier_axes(conv.n_modes)
        cdtype = _complex(x.dtype)
        kept = [len(a.frequencies) for a in axes]
        rest = math.prod(kept[1:])
        rest_sizes = shard_sizes(rest, size)
        rows_in, rows_out = shard_sizes(grid[0], size), shard_sizes(out_grid[0], size)

        # 1. the whole axes: (B, C, n0_r, *s) -> (n0_r, M_rest, B*C)
        t = x.to(cdtype)
        for axis in range(1, d):
            t = apply_along(_analysis(axes[axis], grid[axis], cdtype, x.device), t, 2 + axis)
        t = t.reshape(batch * conv.in_channels, rows_in[rank], rest).permute(1, 2, 0)
        # 2. transpose: (M_rest_r, n0, B*C), modes sharded, axis 0 whole
        t = exchange(t, rows_in, rest_sizes, self.group)
        # 3. axis 0: analysis, the rank's weights, synthesis onto n0'
        t = apply_along(_analysis(axes[0], grid[0], cdtype, x.device), t, 1)
        lo, hi = shard_bounds(rest, size)[rank]
        weight = torch.view_as_complex(conv.weight.to(x.dtype))  # (M_0, *kept_rest, in, out)
        weight = weight.reshape(kept[0], rest, conv.in_channels, conv.out_channels)[:, lo:hi]
        t = t.reshape(hi - lo, kept[0], batch, conv.in_channels)
        t = torch.einsum("rkbi,krio->rkbo", t, weight)
        t = t.reshape(hi - lo, kept[0], batch * conv.out_channels)
        t = apply_along(_synthesis(axes[0], out_grid[0], cdtype, x.device), t, 1)
        # 4. transpose back: (n0'_r, M_rest, B*C_out)
        t = exchange(t, rest_sizes, rows_out, self.group)
        # 5. the whole axes onto the output grid
        t = t.permute(2, 0, 1).reshape(batch, conv.out_channels, rows_out[rank], *kept[1:])
        for axis in range(1, d):
            t = apply_along(_synthesis(axes[axis], out_grid[axis], cdtype, x.device), t, 2 + axis)
        y = t.real.to(x.dtype)
        return y if conv.bias is None else y + conv.bias.to(x.dtype)

    def _check(self, x, grid, out_grid, rank, size) -> None:
        conv = self.conv
        if len(grid) != conv.n_dim or len(out_grid) != conv.n_dim:
            raise ShapeError(
                f"ShardedSpectralConv got grid={grid}, output_shape={out_grid}",
                f"{conv.n_dim} sizes each, the global grid",
                "pass the whole field's spatial shape, not the shard's",
            )
        expected = (x.shape[0], conv.in_channels, shard_sizes(grid[0], size)[rank], *grid[1:])
        if tuple(x.shape) != expected:
            raise ShapeError(
                f"rank {rank} of {size} got a shard of shape {tuple(x.shape)} of grid {grid}",
                f"{expected}: rows {shard_bounds(grid[0], size)[rank]} of axis 0",
                "split the field with opflow.spectral.sharded.shard_bounds",
            )
        check_grid(grid, conv.n_modes)
        if min(out_grid[0], grid[0]) < size:
            raise ShapeError(
                f"axis 0 of {grid[0]} -> {out_grid[0]} points split over {size} ranks",
                "at least one row per rank",
                "use fewer ranks for this grid",
            )
