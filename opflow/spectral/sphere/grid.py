r"""Grids on the sphere: latitude nodes with quadrature weights, equispaced longitudes.

A :class:`SphereGrid` is ``nlat`` colatitudes :math:`\theta_k \in [0, \pi]` (north pole first)
times ``nlon`` longitudes :math:`\lambda_j = 2\pi j / n_{lon}`. Its quadrature weights
:math:`w_k` integrate over :math:`x = \cos\theta`, so that

.. math::

    \int_{S^2} f \, d\Omega \approx \frac{2\pi}{n_{lon}} \sum_{k, j} w_k f(\theta_k, \lambda_j),
    \qquad \sum_k w_k = 2 .

Kinds:

* ``equiangular`` — equispaced colatitudes including both poles (ERA5's 0.25°/1° grids, 721 or
  181 rows), Clenshaw–Curtis weights;
* ``equiangular-no-poles`` — equispaced colatitudes offset by half a step,
  :math:`\theta_k = (k + 1/2)\pi / n` (WeatherBench 2's 64×32 and 1.40625° grids), Fejér's first
  rule;
* ``legendre-gauss`` — Gaussian latitudes (ECMWF's reduced-free "N" grids), Gauss weights;
* ``lobatto`` — Gauss–Lobatto nodes, both poles included.

The nodes and weights of ``equiangular``, ``legendre-gauss`` and ``lobatto`` come from
torch-harmonics (:func:`torch_harmonics.quadrature.precompute_latitudes`); torch-harmonics has no
rule for the offset grid, so Fejér's is computed here.

The default band limit (``max_degree``, exclusive) follows torch-harmonics' triangular truncation:
``nlat`` on Gaussian grids, ``nlat - 1`` on Lobatto, ``(nlat + 1) // 2`` on equiangular ones,
where the quadrature is exact for products of two harmonics of lower degree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch_harmonics.quadrature import precompute_latitudes

from opflow.errors import ResolutionError
from opflow.spectral.cache import constant_cache

__all__ = ["GRID_KINDS", "SphereGrid", "as_output_grid", "colatitudes_and_weights"]

GRID_KINDS = ("equiangular", "equiangular-no-poles", "legendre-gauss", "lobatto")


def _fejer_first_rule(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Colatitudes :math:`(k + 1/2)\pi/n` and Fejér's first-rule weights over :math:`\cos\theta`.

    :math:`w_k = \frac{2}{n}\big(1 - 2\sum_{j=1}^{\lfloor n/2 \rfloor}
    \frac{\cos 2j\theta_k}{4j^2 - 1}\big)`, exact for polynomials in ``cos θ`` of degree < n.
    """
    theta = (torch.arange(n, dtype=torch.float64) + 0.5) * math.pi / n
    j = torch.arange(1, n // 2 + 1, dtype=torch.float64)
    series = (torch.cos(2 * j[:, None] * theta[None, :]) / (4 * j[:, None] ** 2 - 1)).sum(0)
    return theta, (2.0 / n) * (1 - 2 * series)


@constant_cache(maxsize=64)
def colatitudes_and_weights(nlat: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Colatitudes (radians, north pole first) and quadrature weights, float64 ``(nlat,)``."""
    if kind == "equiangular-no-poles":
        return _fejer_first_rule(nlat)
    theta, weights = precompute_latitudes(nlat, grid=kind)
    return theta.to(torch.float64), weights.to(torch.float64)


@dataclass(frozen=True)
class SphereGrid:
    """``nlat`` × ``nlon`` grid of one of :data:`GRID_KINDS` (rows north to south)."""

    nlat: int
    nlon: int
    kind: str = "equiangular"

    def __post_init__(self) -> None:
        if self.kind not in GRID_KINDS:
            raise ResolutionError(
                f"Unknown sphere grid kind {self.kind!r}",
                f"one of {list(GRID_KINDS)}",
                "name the latitude rule of the data's grid",
            )
        least = 3 if self.kind == "lobatto" else 2
        if self.nlat < least or self.nlon < 2:
            raise ResolutionError(
                f"A {self.kind} sphere grid of {self.nlat} x {self.nlon} points is too small",
                f"at least {least} latitudes and 2 longitudes",
                "use a finer grid",
            )

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nlat, self.nlon)

    @property
    def colatitudes(self) -> torch.Tensor:
        """Colatitudes θ in radians, ``(nlat,)`` float64, 0 at the north pole."""
        return colatitudes_and_weights(self.nlat, self.kind)[0]

    @property
    def quadrature_weights(self) -> torch.Tensor:
        """Weights over ``cos θ``, ``(nlat,)`` float64, summing to 2."""
        return colatitudes_and_weights(self.nlat, self.kind)[1]

    @property
    def latitudes_deg(self) -> torch.Tensor:
        """Latitudes in degrees north, ``(nlat,)`` float64, descending from north."""
        return 90.0 - torch.rad2deg(self.colatitudes)

    @property
    def longitudes_deg(self) -> torch.Tensor:
        """Longitudes in degrees east, ``(nlon,)`` float64, from 0."""
        return torch.arange(self.nlon, dtype=torch.float64) * (360.0 / self.nlon)

    @property
    def max_degree(self) -> int:
        """Default band limit: degrees ``l < max_degree`` (see the module docstring)."""
        if self.kind == "legendre-gauss":
            return self.nlat
        if self.kind == "lobatto":
            return self.nlat - 1
        return (self.nlat + 1) // 2

    @property
    def max_order(self) -> int:
        """Orders ``m < max_order`` resolved by the longitudes (up to Nyquist)."""
        return self.nlon // 2 + 1

    def with_shape(self, nlat: int, nlon: int) -> SphereGrid:
        """The same kind of grid at another resolution."""
        return SphereGrid(int(nlat), int(nlon), self.kind)


def as_output_grid(
    grid: SphereGrid, output_shape: SphereGrid | tuple[int, int] | None
) -> SphereGrid:
    """The output grid meant by ``output_shape``: ``grid`` itself (None), a grid given as such,
    or an ``(nlat, nlon)`` pair of ``grid``'s kind."""
    if output_shape is None:
        return grid
    if isinstance(output_shape, SphereGrid):
        return output_shape
    return grid.with_shape(*output_shape)
