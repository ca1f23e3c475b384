"""Local kernels that stay valid as the grid is refined (Liu-Schiaffini et al., ICML 2024).

:class:`DifferentialConv` — a learned ``k``-point stencil per axis whose weights sum to zero,
divided by the grid spacing ``h``:

.. math::

    (D x)_i = \\frac{1}{h} \\sum_j \\tilde w_j \\, x_{i + d_j},
    \\qquad \\tilde w_j = w_j - \\delta_{j, c} \\sum_l w_l,

with ``d_j`` the stencil offsets (in grid points) and ``c`` the centre. Because the weights sum
to zero, a Taylor expansion gives ``D x = Σ_j w̃_j (d_j · ∇x) + O(h)``: a directional
derivative, the same at every resolution, reached at first order in ``h``. ``h`` comes from
the input grid and the domain: ``L / n`` on a periodic axis, ``L / (n - 1)`` on a grid that
includes its boundary points (``zero`` or ``reflect`` boundaries); anisotropic grids use the
mean spacing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.layers.padding import Boundary, check_boundary, pad_boundary

__all__ = ["DifferentialConv", "LocalIntegralConv", "disco_basis", "grid_spacing"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def grid_spacing(
    shape: Sequence[int], boundary: Boundary, domain_length: float | Sequence[float] = 1.0
) -> list[float]:
    """Spacing per axis of a uniform grid of ``shape`` points over ``domain_length``."""
    lengths = (
        [float(domain_length)] * len(shape)
        if isinstance(domain_length, int | float)
        else [float(v) for v in domain_length]
    )
    if boundary == "periodic":
        return [length / n for length, n in zip(lengths, shape)]
    return [length / max(n - 1, 1) for length, n in zip(lengths, shape)]


class DifferentialConv(nn.Module):
    """Zero-sum learned stencil over ``h``: ``(B, in, *s) -> (B, out, *s)``.

    Parameters
    ----------
    in_channels, out_channels:
        Channel counts; one stencil per (out, in) pair.
    kernel_size:
        Odd stencil width per axis (3 in the paper).
    n_dim:
        Spatial dimensions (1, 2 or 3).
    boundary:
        ``periodic``, ``zero`` or ``reflect``: how the stencil sees past the edges.
    domain_length:
        Physical length of each axis (sets ``h`` together with the grid size).
    init_scale:
        Multiplies torch's default initial weight bound.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        n_dim: int = 2,
        boundary: Boundary = "periodic",
        domain_length: float | Sequence[float] = 1.0,
        init_scale: float = 0.01,
    ):
        super().__init__()
        check_boundary(boundary)
        if kernel_size < 3 or kernel_size % 2 == 0 or n_dim not in _CONV:
            raise ConfigError(
                f"kernel_size={kernel_size}, n_dim={n_dim}",
                "an odd kernel_size >= 3 and n_dim in 1, 2, 3",
                "use kernel_size: 3",
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.n_dim = kernel_size, n_dim
        self.boundary, self.domain_length = boundary, domain_length
        # torch's default conv init, scaled down: the 1/h factor makes the branch's output
        # ~(2πk) times a mode-k input, so it starts small and grows where training wants it
        fan_in = in_channels * kernel_size**n_dim
        bound = init_scale * fan_in**-0.5
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, *([kernel_size] * n_dim)).uniform_(-bound, bound)
        )

    def stencil(self) -> torch.Tensor:
        """The zero-sum stencil ``w̃`` (``w`` with the sum taken off the centre)."""
        total = self.weight.sum(dim=tuple(range(2, 2 + self.n_dim)), keepdim=True)
        centre = torch.zeros_like(self.weight)
        centre[(..., *([self.kernel_size // 2] * self.n_dim))] = 1.0
        return self.weight - centre * total

    def forward(self, x: torch.Tensor, spacing: Sequence[float] | None = None) -> torch.Tensor:
        if x.ndim != self.n_dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"DifferentialConv input of shape {tuple(x.shape)}",
                f"(batch, {self.in_channels}, *spatial) with {self.n_dim} spatial dims",
                "check the channel count and the spatial dims",
            )
        if spacing is None:
            spacing = grid_spacing(x.shape[2:], self.boundary, self.domain_length)
        h = sum(spacing) / len(spacing)
        padded = pad_boundary(x, self.kernel_size // 2, self.boundary)
        return _CONV[self.n_dim](padded, self.stencil()) / h

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"boundary={self.boundary!r}"
        )


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
        self._basis: dict[tuple, torch.Tensor] = {}

    def _basis_for(self, spacing: tuple[float, float], like: torch.Tensor) -> torch.Tensor:
        key = (spacing, like.dtype, like.device)
        if key not in self._basis:
            basis = disco_basis(self.radius, spacing, self.n_rings, self.n_angles)
            self._basis[key] = basis.to(dtype=like.dtype, device=like.device)
        return self._basis[key]

    def forward(self, x: torch.Tensor, spacing: Sequence[float] | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"LocalIntegralConv input of shape {tuple(x.shape)}",
                f"(batch, {self.in_channels}, ny, nx)",
                "check the channel count; the local integral kernel is 2-D",
            )
        spacing = tuple(spacing or grid_spacing(x.shape[2:], self.boundary, self.domain_length))
        basis = self._basis_for(spacing, x)  # (L, ky, kx)
        kernel = torch.einsum("oil,lyx->oiyx", self.weight, basis)
        padded = pad_boundary(x, (basis.shape[1] // 2, basis.shape[2] // 2), self.boundary)
        return F.conv2d(padded, kernel)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, radius={self.radius}, "
            f"basis=1+{self.n_rings - 1}x{self.n_angles}, boundary={self.boundary!r}"
        )
