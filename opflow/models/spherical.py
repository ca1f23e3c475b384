r"""Neural operators on the sphere: SFNO and a spin-0 spherical CNN, on the core's SHT.

Both take fields ``(B, C, nlat, nlon)`` on a grid of kind ``grid`` (rows north to south, see
:class:`opflow.spectral.sphere.SphereGrid`) and accept ``output_shape=(nlat', nlon')`` to
evaluate on another grid of the same kind: their weights live on spherical-harmonic degrees and
orders, so the band limit ``lmax`` — not the grid — is part of the model.

**SFNO** (Bonev et al., ICML 2023): FNO's architecture with the spherical convolution in place
of the planar one::

    x -> [xyz embedding] -> lifting MLP -> n_layers x FNOBlock(SphericalConv) -> projection

(the same :class:`opflow.models.FNOBlock`; skips are moved between grids by band-limited
spherical resampling), optionally with a local integral (DISCO) branch in every block.

**SphericalCNN** (after Esteves et al., "Scaling Spherical CNNs", ICML 2023, spin-0 fields): an
encoder–decoder of residual blocks of isotropic spectral convolutions with localized filters
(weights at a few anchor degrees, interpolated across ``l``) and spectral batch norm; between
levels, *spectral pooling* halves the band limit and the grid (a convolution whose synthesis
targets the coarser grid), and the decoder comes back up the same way with skip connections.
Every layer commutes with rotations of the sphere (with ``positional_embedding=None``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.layers import ChannelMLP
from opflow.layers.fno_block import FNOBlock, activation
from opflow.layers.sphere import SphereDisco, SphereEmbedding, SphericalBatchNorm
from opflow.models.registry import register
from opflow.models.skeleton import LiftBlocksProject, batch_chunk_size, in_batch_chunks
from opflow.spectral.sphere import SphereGrid, SphericalConv, sphere_resample
from opflow.spectral.sphere.transform import check_band_limit

__all__ = ["SFNO", "SphericalCNN", "coarser_grid"]


def _embedding(positional_embedding: str | None, grid: str) -> SphereEmbedding | None:
    if positional_embedding not in ("xyz", None):
        raise ConfigError(
            f"positional_embedding={positional_embedding!r} is not supported on the sphere",
            "'xyz' (unit vector of each point) or None",
            "use 'xyz' or None",
        )
    return SphereEmbedding(grid) if positional_embedding else None


def _check_input(model: nn.Module, x: torch.Tensor) -> SphereGrid:
    if x.ndim != 4 or x.shape[1] != model.in_channels:
        raise ShapeError(
            f"{type(model).__name__} got input of shape {tuple(x.shape)}",
            f"(batch, {model.in_channels}, nlat, nlon)",
            "reshape the input to (batch, channel, lat, lon)",
        )
    grid = SphereGrid(x.shape[2], x.shape[3], model.grid)
    check_band_limit(grid, model.lmax, model.mmax)
    return grid


@register("SFNO")
class SFNO(LiftBlocksProject):
    """Spherical Fourier neural operator.

    Parameters
    ----------
    in_channels, out_channels, hidden_channels, n_layers : int
        As :class:`opflow.models.FNO`.
    lmax : int
        Band limit: degrees ``l < lmax`` in every spherical convolution.
    mmax : int, optional
        Orders ``m < mmax`` (``lmax`` by default).
    operator : {"diagonal", "isotropic"}
        Weights per ``(l, m)`` (SFNO's default) or per ``l`` (rotation equivariant).
    grid : str
        Grid kind of inputs and outputs.
    positional_embedding : "xyz" or None
        Append each point's unit vector to the input.
    lifting_channel_ratio, projection_channel_ratio, non_linearity, use_channel_mlp,
    channel_mlp_expansion, channel_mlp_skip, fno_skip
        As :class:`opflow.models.FNO`.
    disco_radius : float, optional
        Add a local integral (DISCO) branch to every block: torch-harmonics' piecewise-linear
        filter of this geodesic radius (radians), the same filter on every grid
        (:class:`opflow.layers.sphere.SphereDisco`).
    disco_kernel_shape : int or (int, int)
        Rings (and angular sectors) of the DISCO basis.
    backend : {"auto", "fft", "gemm"}
        Longitude transform of every layer.
    chunk_bytes : int or None
        As :class:`opflow.models.FNO`: on the CPU, run the batch in chunks whose hidden
        activations take at most this many bytes; ``None``: the whole batch at once. 8 MB:
        a step at batch 16, width 32 is 1.1x (64x128) and 1.4x (128x256) faster than unchunked;
        smaller chunks raise the peak resident memory at 128x256 (4 MB: 3.0 GB against 2.0
        unchunked and 2.5 at 8 MB; ``benchmarks/RESULTS.md``).

    Shapes
    ------
    ``forward(x, output_shape=None)``: ``(B, in_channels, nlat, nlon)`` ->
    ``(B, out_channels, *output_shape)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        lmax: int,
        mmax: int | None = None,
        hidden_channels: int = 32,
        n_layers: int = 4,
        operator: str = "diagonal",
        grid: str = "equiangular",
        positional_embedding: str | None = None,
        lifting_channel_ratio: float = 2,
        projection_channel_ratio: float = 2,
        non_linearity: str | Callable = "gelu",
        use_channel_mlp: bool = True,
        channel_mlp_expansion: float = 0.5,
        channel_mlp_skip: str | None = "soft-gating",
        fno_skip: str | None = "linear",
        disco_radius: float | None = None,
        disco_kernel_shape: int | tuple[int, int] = (3, 4),
        backend: str = "auto",
        chunk_bytes: int | None = 8 * 2**20,
    ):
        lmax = int(lmax)
        mmax = lmax if mmax is None else int(mmax)
        if disco_radius is not None and not 0 < disco_radius < math.pi:
            raise ConfigError(
                f"disco_radius={disco_radius}",
                "a geodesic radius in radians, 0 < r < pi",
                "e.g. 0.2 (about 1300 km on the Earth)",
            )
        act = activation(non_linearity)
        resample = partial(sphere_resample, kind=grid)

        def make_block(index: int) -> FNOBlock:
            return FNOBlock(
                hidden_channels,
                (lmax, mmax),
                non_linearity=act,
                use_channel_mlp=use_channel_mlp,
                channel_mlp_expansion=channel_mlp_expansion,
                channel_mlp_skip=channel_mlp_skip,
                fno_skip=fno_skip,
                conv=SphericalConv(
                    hidden_channels,
                    hidden_channels,
                    lmax,
                    mmax,
                    operator=operator,
                    grid=grid,
                    backend=backend,
                ),
                resample=resample,
                local=(
                    None
                    if disco_radius is None
                    else SphereDisco(
                        hidden_channels, hidden_channels, disco_radius, disco_kernel_shape, grid
                    )
                ),
            )

        super().__init__(
            in_channels,
            out_channels,
            hidden_channels,
            n_layers,
            make_block,
            embedding=_embedding(positional_embedding, grid),
            lifting_channel_ratio=lifting_channel_ratio,
            projection_channel_ratio=projection_channel_ratio,
            non_linearity=act,
        )
        self.lmax, self.mmax, self.grid = lmax, mmax, grid
        self.chunk_bytes = chunk_bytes

    def forward(self, x: torch.Tensor, output_shape: Sequence[int] | None = None) -> torch.Tensor:
        grid = _check_input(self, x)
        out = None if output_shape is None else tuple(int(s) for s in output_shape)
        out = None if out is None or out == grid.shape else out
        points = max(grid.nlat * grid.nlon, math.prod(out) if out else 0)
        chunk = batch_chunk_size(x, self.chunk_bytes, self.hidden_channels * points)
        return in_batch_chunks(lambda part: super(SFNO, self).forward(part, out), x, chunk)


def coarser_grid(grid: SphereGrid, level: int) -> SphereGrid:
    """``grid`` with its spacing doubled ``level`` times (poles kept on grids that have them)."""
    nlat, nlon = grid.nlat, grid.nlon
    for _ in range(level):
        nlat = (nlat - 1) // 2 + 1 if grid.kind in ("equiangular", "lobatto") else nlat // 2
        nlon //= 2
    return grid.with_shape(nlat, nlon)


class _ResidualBlock(nn.Module):
    """``x + conv(act(norm(conv(act(norm(x))))))`` with isotropic, localized spectral convs."""

    def __init__(self, channels: int, lmax: int, anchors: int, grid: str, act, backend: str):
        super().__init__()
        self.norms = nn.ModuleList(SphericalBatchNorm(channels, grid) for _ in range(2))
        self.convs = nn.ModuleList(
            SphericalConv(
                channels,
                channels,
                lmax,
                operator="isotropic",
                anchors=min(anchors, lmax),
                grid=grid,
                backend=backend,
            )
            for _ in range(2)
        )
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for norm, conv in zip(self.norms, self.convs):
            y = conv(self.act(norm(y)))
        return x + y


@register("SphericalCNN")
class SphericalCNN(nn.Module):
    """Spin-0 spherical CNN encoder–decoder (see the module docstring).

    Parameters
    ----------
    in_channels, out_channels : int
    lmax : int
        Band limit of the finest level; level ``s`` keeps ``l < lmax // 2**s``.
    hidden_channels : int
        Width of the finest level; level ``s`` has ``hidden_channels * 2**s``.
    n_levels : int
        Resolution levels (1 = no pooling).
    blocks_per_level : int
        Residual blocks per level, on the way down and on the way up.
    anchors : int
        Learned degrees per filter (localized filters), capped at each level's band limit.
    grid : str
        Grid kind of inputs and outputs.
    positional_embedding : "xyz" or None
    non_linearity : str or callable
    backend : {"auto", "fft", "gemm"}

    Shapes
    ------
    ``forward(x, output_shape=None)``: ``(B, in_channels, nlat, nlon)`` ->
    ``(B, out_channels, *output_shape)``. Level grids are the input grid coarsened by 2 per
    level; the input grid must resolve ``lmax``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        lmax: int,
        hidden_channels: int = 16,
        n_levels: int = 2,
        blocks_per_level: int = 1,
        anchors: int = 8,
        grid: str = "equiangular",
        positional_embedding: str | None = None,
        non_linearity: str | Callable = "gelu",
        backend: str = "auto",
    ):
        super().__init__()
        if n_levels < 1 or lmax // 2 ** (n_levels - 1) < 2:
            raise ConfigError(
                f"SphericalCNN with lmax={lmax} cannot have n_levels={n_levels}",
                "lmax // 2**(n_levels - 1) >= 2",
                "use fewer levels or a larger lmax",
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.lmax = self.mmax = int(lmax)
        self.grid, self.n_levels = grid, n_levels
        act = activation(non_linearity)
        self.positional_embedding = _embedding(positional_embedding, grid)
        widths = [hidden_channels * 2**s for s in range(n_levels)]
        limits = [self.lmax // 2**s for s in range(n_levels)]

        def conv(c_in, c_out, band):
            return SphericalConv(
                c_in, c_out, band, operator="isotropic", grid=grid, backend=backend
            )

        def blocks(s):
            return nn.Sequential(
                *(
                    _ResidualBlock(widths[s], limits[s], anchors, grid, act, backend)
                    for _ in range(blocks_per_level)
                )
            )

        lifting_in = in_channels + (3 if self.positional_embedding else 0)
        self.lifting = ChannelMLP(lifting_in, hidden_channels, 2 * hidden_channels)
        self.down = nn.ModuleList(blocks(s) for s in range(n_levels))
        # spectral pooling: analysis at the coarser band limit, synthesis on the coarser grid
        self.pool = nn.ModuleList(
            conv(widths[s], widths[s + 1], limits[s + 1]) for s in range(n_levels - 1)
        )
        self.unpool = nn.ModuleList(
            conv(widths[s + 1], widths[s], limits[s + 1]) for s in range(n_levels - 1)
        )
        self.up = nn.ModuleList(blocks(s) for s in range(n_levels - 1))
        self.projection = ChannelMLP(hidden_channels, out_channels, 2 * hidden_channels)
        self.act = act

    def forward(self, x: torch.Tensor, output_shape: Sequence[int] | None = None) -> torch.Tensor:
        grid = _check_input(self, x)
        grids = [coarser_grid(grid, s) for s in range(self.n_levels)]
        for s, g in enumerate(grids):
            check_band_limit(g, self.lmax // 2**s, self.lmax // 2**s, what=f"level-{s}")
        if self.positional_embedding is not None:
            x = self.positional_embedding(x)
        x = self.lifting(x)
        skips = []
        for s in range(self.n_levels):
            x = self.down[s](x)
            if s < self.n_levels - 1:
                skips.append(x)
                x = self.act(self.pool[s](x, output_shape=grids[s + 1]))
        for s in range(self.n_levels - 2, -1, -1):
            x = skips[s] + self.act(self.unpool[s](x, output_shape=grids[s]))
            x = self.up[s](x)
        if output_shape is not None and tuple(output_shape) != grid.shape:
            x = sphere_resample(x, tuple(int(n) for n in output_shape), kind=self.grid)
        return self.projection(x)
