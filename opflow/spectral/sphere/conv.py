r"""Spectral convolution on the sphere (SFNO's layer and the spherical CNN's convolution).

.. math::

    y = \mathrm{SHT}^{-1}_{\text{out}}\big(K \cdot \mathrm{SHT}_{\text{in}}(x)\big) + b

with ``K`` one of

* ``"isotropic"`` — a real ``in x out`` matrix per degree ``l``, shared by all orders:
  :math:`\hat y_l^m = K_l \hat x_l^m`. This is convolution with a zonal filter (spin 0, Esteves
  et al. 2023), equivariant to every rotation of the sphere. Optionally *localized*: ``K_l`` is
  linearly interpolated across ``l`` from ``anchors`` learned values, which keeps the filter
  smooth in ``l`` and so concentrated in space;
* ``"diagonal"`` — a complex matrix per ``(l, m)`` (SFNO's "diagonal" operator): equivariant to
  rotations about the polar axis only, more expressive.

The weights live on (degree, order), the transforms on grids: the same module applies to any grid
(kind and size) that resolves its band limit, and synthesises onto any output grid.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.spectral.mixing import mix_modes
from opflow.spectral.precision import full_precision
from opflow.spectral.sphere import transform as sht_ops
from opflow.spectral.sphere.grid import SphereGrid, as_output_grid

__all__ = ["SphericalConv", "anchor_interpolation"]


def anchor_interpolation(lmax: int, anchors: int) -> torch.Tensor:
    """``(lmax, anchors)`` matrix of linear interpolation from ``anchors`` equispaced degrees
    (the first at ``l = 0``, the last at ``l = lmax - 1``) to every degree."""
    position = torch.linspace(0, anchors - 1, lmax, dtype=torch.float64)
    below = position.floor().clamp(max=anchors - 2).long()
    frac = position - below
    mat = torch.zeros(lmax, anchors, dtype=torch.float64)
    rows = torch.arange(lmax)
    mat[rows, below] = 1 - frac
    mat[rows, below + 1] = frac
    return mat


class SphericalConv(nn.Module):
    """Spectral convolution of real fields on a sphere grid.

    Parameters
    ----------
    in_channels, out_channels : int
    lmax : int
        Degrees ``l < lmax`` are kept (the band limit).
    mmax : int, optional
        Orders ``m < mmax`` are kept; ``lmax`` by default (triangular truncation).
    operator : {"diagonal", "isotropic"}
        Weights per ``(l, m)`` (complex) or per ``l`` (real); see the module docstring.
    anchors : int, optional
        ``"isotropic"`` only: learn the filter at this many degrees and interpolate linearly.
    grid : str
        Kind of the input grid (:data:`opflow.spectral.sphere.GRID_KINDS`) when ``forward`` is
        not given a :class:`SphereGrid`.
    bias : bool
        Add a learned per-channel constant after synthesis.
    backend : {"auto", "fft", "gemm"}
        How the longitude transform is computed (see :mod:`opflow.spectral.sphere.transform`).

    Shapes
    ------
    ``forward(x, output_shape=None, grid=None)``: ``x`` ``(B, in_channels, nlat, nlon)`` ->
    ``(B, out_channels, nlat', nlon')`` on ``output_shape`` (a :class:`SphereGrid` or an
    ``(nlat', nlon')`` pair of the input's kind; the input grid by default).
    Weights: ``(mmax, lmax, in, out, 2)`` (diagonal) or ``(lmax or anchors, in, out)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        lmax: int,
        mmax: int | None = None,
        operator: str = "diagonal",
        anchors: int | None = None,
        grid: str = "equiangular",
        bias: bool = True,
        backend: str = "auto",
    ):
        super().__init__()
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.lmax = int(lmax)
        self.mmax = self.lmax if mmax is None else int(mmax)
        self.operator, self.grid_kind, self.backend = operator, grid, backend
        SphereGrid(3, 4, grid)  # fail early on an unknown grid kind
        sht_ops.select_sphere_backend(backend, SphereGrid(3, 4), 1)  # and on a bad backend
        if operator not in ("diagonal", "isotropic"):
            raise ConfigError(
                f"Unknown spherical convolution operator {operator!r}",
                "'diagonal' (weights per (l, m)) or 'isotropic' (weights per l)",
                "pick one of the two",
            )
        if not 1 <= self.mmax <= self.lmax:
            raise ConfigError(
                f"SphericalConv got lmax={lmax}, mmax={mmax}",
                "1 <= mmax <= lmax",
                "keep at most lmax orders",
            )
        std = math.sqrt(2.0 / (in_channels + out_channels))
        if operator == "diagonal":
            if anchors is not None:
                raise ConfigError(
                    "anchors (localized filters) apply to the isotropic operator only",
                    "anchors=None with operator='diagonal'",
                    "drop anchors or use operator='isotropic'",
                )
            shape = (self.mmax, self.lmax, in_channels, out_channels, 2)
            self.weight = nn.Parameter(torch.randn(*shape) * (std / math.sqrt(2.0)))
            self.register_buffer("interpolation", None)
        else:
            n_weights = self.lmax if anchors is None else int(anchors)
            if not 2 <= n_weights <= self.lmax:
                raise ConfigError(
                    f"anchors={anchors} with lmax={self.lmax}",
                    "2 <= anchors <= lmax",
                    "use fewer anchors or a larger lmax",
                )
            self.weight = nn.Parameter(torch.randn(n_weights, in_channels, out_channels) * std)
            interp = anchor_interpolation(self.lmax, n_weights) if anchors is not None else None
            self.register_buffer(
                "interpolation", None if interp is None else interp.float(), persistent=False
            )
        self.bias = nn.Parameter(torch.zeros(out_channels, 1, 1)) if bias else None

    def degree_weights(self) -> torch.Tensor:
        """Isotropic filter per degree, ``(lmax, in, out)`` (anchors interpolated)."""
        if self.interpolation is None:
            return self.weight
        flat = self.weight.reshape(self.weight.shape[0], -1)
        mat = self.interpolation.to(self.weight.dtype)
        return (mat @ flat).view(self.lmax, self.in_channels, self.out_channels)

    def input_grid(self, x: torch.Tensor, grid: SphereGrid | None = None) -> SphereGrid:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"SphericalConv got a tensor of shape {tuple(x.shape)}",
                f"(batch, {self.in_channels}, nlat, nlon)",
                "pass (batch, channel, lat, lon) fields",
            )
        return grid if grid is not None else SphereGrid(x.shape[2], x.shape[3], self.grid_kind)

    @full_precision
    def forward(
        self,
        x: torch.Tensor,
        output_shape: SphereGrid | tuple[int, int] | None = None,
        grid: SphereGrid | None = None,
    ) -> torch.Tensor:
        grid = self.input_grid(x, grid)
        output_grid = as_output_grid(grid, output_shape)
        spec = sht_ops.analyze(x, grid, self.lmax, self.mmax, self.backend)
        y = sht_ops.synthesize(self.mix(spec), output_grid, self.backend)
        return y if self.bias is None else y + self.bias

    def mix(self, spec: torch.Tensor, orders: slice = slice(None)) -> torch.Tensor:
        """Apply ``K`` to a spectrum ``(m, lmax, 2, B, in)`` of the orders ``orders`` (all by
        default; a slice when the orders are sharded across ranks) -> ``(m, lmax, 2, B, out)``."""
        n_orders, _, _, batch = spec.shape[:4]
        if self.operator == "diagonal":  # mix_modes' layout: (m*l, B, [real | imaginary])
            flat = spec.transpose(2, 3).reshape(n_orders * self.lmax, batch, 2 * self.in_channels)
            weight = self.weight[orders].reshape(-1, self.in_channels, self.out_channels, 2)
            mixed = mix_modes(flat, weight).view(n_orders, self.lmax, batch, 2, -1)
            return mixed.transpose(2, 3)
        # real per-degree weights: the part and batch rows alike
        flat = spec.reshape(n_orders, self.lmax, 2 * batch, self.in_channels)
        mixed = torch.matmul(flat, self.degree_weights())
        return mixed.view(n_orders, self.lmax, 2, batch, self.out_channels)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, lmax={self.lmax}, mmax={self.mmax}, "
            f"operator={self.operator!r}, grid={self.grid_kind!r}"
        )
