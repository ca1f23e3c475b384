"""The local integral (DISCO) kernel of fixed physical radius on planar grids (Liu-Schiaffini et
al., ICML 2024; Ocampo et al., ICLR 2023): a learned combination of piecewise-linear basis
functions, each sampled on the grid and rescaled to its exact integral, so the kernel is the same
function on every grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.layers.padding import Boundary, check_boundary, grid_spacing, pad_boundary
from opflow.spectral.cache import ConstantCache

__all__ = ["LocalIntegralConv", "disco_basis"]


def _radial_hat_integrals(n_rings: int) -> list[float]:
    """``∫_0^1 ρ_i(t) t dt`` of the piecewise-linear radial hats on nodes ``i / (n_rings - 1)``."""
    step = 1.0 / (n_rings - 1)
    out = []
    for i in range(n_rings):
        if i == 0:
            out.append(step**2 / 6)
        elif i == n_rings - 1:
            out.append(step / 2 - step**2 / 6)
        else:
            out.append(i * step * step)
    return out


def disco_basis(
    radius: float, spacing: Sequence[float], n_rings: int, n_angles: int
) -> torch.Tensor:
    """Piecewise-linear local basis sampled on the grid offsets, float64 ``(L, ky, kx)``.

    ``ψ_0 = ρ_0(|d| / r)`` (isotropic, at the centre) and ``ψ_{i,j} = ρ_i(|d| / r) α_j(φ)`` for
    rings ``i >= 1`` and angles ``j``: radial hats ``ρ_i`` on ``n_rings`` nodes over ``[0, r]``
    and periodic angular hats ``α_j`` on ``n_angles`` nodes. Each sampled function is scaled
    so that its quadrature sum (``Σ ψ(d) h_y h_x``) equals its exact integral, then divided by
    the disc's area ``π r²``: a constant field gets the same response on every grid.
    """
    hy, hx = spacing
    my, mx = int(radius / hy), int(radius / hx)
    dy = torch.arange(-my, my + 1, dtype=torch.float64) * hy
    dx = torch.arange(-mx, mx + 1, dtype=torch.float64) * hx
    Y, X = torch.meshgrid(dy, dx, indexing="ij")
    t = torch.sqrt(X**2 + Y**2) / radius
    phi = torch.atan2(Y, X)
    step = 1.0 / (n_rings - 1)
    rings = [torch.clamp(1 - (t - i * step).abs() / step, min=0) * (t <= 1) for i in range(n_rings)]
    width = 2 * math.pi / n_angles
    angles = []
    for j in range(n_angles):
        diff = torch.remainder(phi - j * width + math.pi, 2 * math.pi) - math.pi
        angles.append(torch.clamp(1 - diff.abs() / width, min=0))
    radial = _radial_hat_integrals(n_rings)
    functions = [(rings[0], 2 * math.pi * radial[0])]
    for i in range(1, n_rings):
        functions += [(rings[i] * angles[j], width * radial[i]) for j in range(n_angles)]
    basis = []
    for psi, integral in functions:  # integrals on the unit disc; r² cancels against π r²
        total = psi.sum() * hy * hx / radius**2
        basis.append(psi * (integral / total / math.pi) if total > 0 else torch.zeros_like(psi))
    return torch.stack(basis) * (hy * hx / radius**2)


class LocalIntegralConv(nn.Module):
    """Local integral kernel (DISCO) on a uniform 2-D grid: ``(B, in, ny, nx) -> (B, out, ...)``.

    ``(K x)(p) = ∫_{|p - q| <= r} κ(p - q) x(q) dq`` with ``κ = Σ_l θ_l ψ_l`` over the
    piecewise-linear basis of :func:`disco_basis`, the integral taken with the grid's
    quadrature. ``radius`` is in physical units, so the receptive field keeps its physical
    size at any resolution (the stencil grows with the grid). The basis is computed per grid
    (cached), the weights ``θ`` ``(out, in, L)`` are shared by all grids.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        radius: float = 0.0625,
        n_rings: int = 3,
        n_angles: int = 4,
        boundary: Boundary = "periodic",
        domain_length: float | Sequence[float] = 1.0,
    ):
        super().__init__()
        check_boundary(boundary)
        if radius <= 0 or n_rings < 2 or n_angles < 1:
            raise ConfigError(
                f"radius={radius}, n_rings={n_rings}, n_angles={n_angles}",
                "radius > 0 (physical units), n_rings >= 2, n_angles >= 1",
                "e.g. radius: 0.0625 on the unit square",
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.radius, self.n_rings, self.n_angles = radius, n_rings, n_angles
        self.boundary, self.domain_length = boundary, domain_length
        n_basis = 1 + (n_rings - 1) * n_angles
        bound = (in_channels * n_basis) ** -0.5
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, n_basis).uniform_(-bound, bound)
        )
        self._basis = ConstantCache(maxsize=8)

    def _basis_for(self, spacing: tuple[float, float], like: torch.Tensor) -> torch.Tensor:
        return self._basis.get(
            (spacing, like.dtype, like.device),
            lambda: disco_basis(self.radius, spacing, self.n_rings, self.n_angles).to(
                dtype=like.dtype, device=like.device
            ),
        )

    def forward(self, x: torch.Tensor, spacing: Sequence[float] | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"LocalIntegralConv input of shape {tuple(x.shape)}",
                f"(batch, {self.in_channels}, ny, nx)",
                "check the channel count; the local integral kernel is 2-D",
            )
        kernel = self.kernel(x.shape[2:], spacing, like=x)
        padded = pad_boundary(x, (kernel.shape[2] // 2, kernel.shape[3] // 2), self.boundary)
        return F.conv2d(padded, kernel)

    def kernel(
        self,
        grid_shape: Sequence[int],
        spacing: Sequence[float] | None = None,
        like: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The convolution kernel on this grid, ``Σ_l θ_l ψ_l``: ``(out, in, ky, kx)``."""
        spacing = tuple(spacing or grid_spacing(grid_shape, self.boundary, self.domain_length))
        basis = self._basis_for(spacing, self.weight if like is None else like)  # (L, ky, kx)
        return torch.einsum("oil,lyx->oiyx", self.weight, basis)

    def coefficients(self) -> torch.Tensor:
        """The learned weights ``θ`` as coefficients of :meth:`basis`: ``(out, in, L)``."""
        return self.weight

    def basis(
        self, grid_shape: Sequence[int], spacing: Sequence[float] | None = None
    ) -> torch.Tensor:
        """The fixed basis ``ψ_l`` on this grid, float64 ``(L, ky, kx)`` (:func:`disco_basis`)."""
        spacing = tuple(spacing or grid_spacing(grid_shape, self.boundary, self.domain_length))
        return disco_basis(self.radius, spacing, self.n_rings, self.n_angles)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, radius={self.radius}, "
            f"basis=1+{self.n_rings - 1}x{self.n_angles}, boundary={self.boundary!r}"
        )
