"""Local kernels that stay valid as the grid is refined (Liu-Schiaffini et al., ICML 2024).

:class:`DifferentialConv` — a learned ``k``-point stencil per axis whose weights sum to zero,
divided by the grid spacing ``h``:

.. math::

    (D x)_i = \\frac{1}{h} \\sum_j \\tilde w_j \\, x_{i + d_j},
    \\qquad \\tilde w_j = w_j - \\delta_{j, c} \\sum_l w_l,

with ``d_j`` the stencil offsets (in grid points) and ``c`` the centre. Because the weights sum
to zero, a Taylor expansion gives ``D x = Σ_j w̃_j (d_j · ∇x) + O(h)``: a directional
derivative, the same at every resolution, reached at first order in ``h`` (scaled by a fixed
physical length ``ℓ``, ``length_scale``, which sets its learning speed). ``h`` comes from
the input grid and the domain: ``L / n`` on a periodic axis, ``L / (n - 1)`` on a grid that
includes its boundary points (``zero`` or ``reflect`` boundaries); anisotropic grids use the
mean spacing.

:class:`LocalIntegralConv` — the local integral (DISCO) kernel of fixed physical radius.

:class:`LocalBranches` — the sum of a block's local branches. On a periodic grid a local
kernel is a circular convolution, i.e. a Fourier multiplier: the branches' stencils are
transformed once per forward and applied together as one per-wavenumber channel mixing,

.. math::

    \\widehat{(K x)}(\\xi) = \\Big(\\sum_b \\hat k_b(\\xi)\\Big) \\hat x(\\xi),
    \\qquad \\hat k_b(\\xi) = \\sum_d k_b(d)\\, e^{2\\pi i \\xi \\cdot d / n},

the same numbers as the direct (padded) convolutions to rounding, at a cost that does not
grow with the stencil (the DISCO stencil grows with the grid: 9×9 at 64², 17×17 at 128²).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.layers.padding import Boundary, check_boundary, pad_boundary
from opflow.spectral.conv import mix_modes
from opflow.spectral.precision import full_precision

__all__ = [
    "DifferentialConv",
    "LocalBranches",
    "LocalIntegralConv",
    "disco_basis",
    "grid_spacing",
    "periodic_transfer",
    "transfer_on_grid",
]

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
    length_scale:
        ``ℓ`` in physical units: the layer computes ``ℓ D x``, a derivative times a fixed
        length, in the units of ``x``. It converges like ``D x`` and sets how fast the
        stencil learns: Adam moves every weight by about the learning rate per step, so the
        kernel ``ℓ w̃ / h`` moves by ``ℓ / h`` times that on a grid of spacing ``h``. With ``ℓ``
        of the order of the training grid's spacing the branch learns like an ordinary
        convolution (neuraloperator's kernel divides by ``h / h_train``: ``ℓ = h_train``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        n_dim: int = 2,
        boundary: Boundary = "periodic",
        domain_length: float | Sequence[float] = 1.0,
        length_scale: float = 1.0,
    ):
        super().__init__()
        check_boundary(boundary)
        if kernel_size < 3 or kernel_size % 2 == 0 or n_dim not in _CONV or length_scale <= 0:
            raise ConfigError(
                f"kernel_size={kernel_size}, n_dim={n_dim}, length_scale={length_scale}",
                "an odd kernel_size >= 3, n_dim in 1, 2, 3 and a length_scale > 0",
                "use kernel_size: 3 and a positive length_scale (physical units)",
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.n_dim = kernel_size, n_dim
        self.boundary, self.domain_length = boundary, domain_length
        self.length_scale = float(length_scale)
        bound = (in_channels * kernel_size**n_dim) ** -0.5  # torch's default conv init
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
        kernel = self.kernel(x.shape[2:], spacing)
        padded = pad_boundary(x, self.kernel_size // 2, self.boundary)
        return _CONV[self.n_dim](padded, kernel)

    def kernel(
        self,
        grid_shape: Sequence[int],
        spacing: Sequence[float] | None = None,
        like: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The convolution kernel on this grid, ``w̃ / h``: ``(out, in, k, ..., k)``
        (``like`` is accepted for a common signature with :class:`LocalIntegralConv`)."""
        if spacing is None:
            spacing = grid_spacing(grid_shape, self.boundary, self.domain_length)
        return self.stencil() * (self.length_scale / (sum(spacing) / len(spacing)))

    def coefficients(self) -> torch.Tensor:
        """The learned weights as coefficients of :meth:`basis`: ``(out, in, k**n_dim)``."""
        return self.weight.flatten(2)

    def basis(
        self, grid_shape: Sequence[int], spacing: Sequence[float] | None = None
    ) -> torch.Tensor:
        """The kernel's fixed basis on this grid, float64 ``(k**n_dim, k, ..., k)``:
        ``ℓ (e_j - e_c) / h`` for every stencil point ``j`` (centre ``c``), so that
        ``kernel = Σ_j coefficients[..., j] basis[j]``."""
        if spacing is None:
            spacing = grid_spacing(grid_shape, self.boundary, self.domain_length)
        points = self.kernel_size**self.n_dim
        basis = torch.eye(points, dtype=torch.float64)
        basis[:, points // 2] -= 1.0  # the centre is the middle point of the flattened stencil
        h = sum(spacing) / len(spacing)
        return (basis * (self.length_scale / h)).view(points, *([self.kernel_size] * self.n_dim))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"boundary={self.boundary!r}, length_scale={self.length_scale:g}"
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


def periodic_transfer(kernel: torch.Tensor, grid_shape: Sequence[int]) -> torch.Tensor:
    """Fourier multiplier of a centred cross-correlation kernel on a periodic grid.

    ``kernel`` ``(out, in, k_1, ..., k_d)`` (odd sizes, centre at ``k // 2``) acts as
    ``y(p) = Σ_d kernel(d) x(p + d)``; returns ``T`` ``(out, in, n_1, ..., n_d // 2 + 1)``
    complex with ``rfftn(y) = Σ_in T · rfftn(x)``. Each ``k_i`` must not exceed ``n_i``.
    """
    n_dim = len(grid_shape)
    sizes = kernel.shape[2:]
    if any(k > n for k, n in zip(sizes, grid_shape)):
        raise ShapeError(
            f"a local kernel of {tuple(sizes)} points on a grid of {tuple(grid_shape)}",
            "a grid at least as large as the kernel on every axis",
            "use a finer grid or a smaller disco_radius",
        )
    # y = Σ_d k(d) x(p + d) is the circular convolution of x with g(e) = k(-e): place the
    # flipped kernel with its centre at the origin
    flipped = kernel.flip(tuple(range(2, 2 + n_dim)))
    placed = kernel.new_zeros(*kernel.shape[:2], *grid_shape)
    placed[(..., *(slice(0, k) for k in sizes))] = flipped
    centred = placed.roll([-(k // 2) for k in sizes], dims=tuple(range(2, 2 + n_dim)))
    return torch.fft.rfftn(centred, s=tuple(grid_shape), dim=tuple(range(2, 2 + n_dim)))


def transfer_on_grid(
    transfer: torch.Tensor, reference_shape: Sequence[int], grid_shape: Sequence[int]
) -> torch.Tensor:
    """A multiplier given on ``reference_shape``'s wavenumbers, applied on ``grid_shape``.

    ``transfer`` ``(out, in, r_1, ..., r_d // 2 + 1)`` (``rfftn`` layout). Wavenumbers that
    both grids resolve below their Nyquist (``|k| < min(r, n) / 2`` per axis) keep their
    value; all others are zero — the band limit that makes the spectral conv resolution
    invariant. Returns ``(out, in, n_1, ..., n_d // 2 + 1)``.
    """
    out = transfer
    n_dim = len(grid_shape)
    for axis, (r, n) in enumerate(zip(reference_shape, grid_shape)):
        dim = 2 + axis
        m = min(r, n)
        if axis == n_dim - 1:
            src = dst = torch.arange((m + 1) // 2, device=transfer.device)
            length = n // 2 + 1
        else:
            kept = torch.arange(-((m - 1) // 2), (m - 1) // 2 + 1, device=transfer.device)
            src, dst, length = kept % r, kept % n, n
        picked = out.index_select(dim, src)
        shape = list(picked.shape)
        shape[dim] = length
        out = picked.new_zeros(shape).index_copy(dim, dst, picked)
    return out


class LocalBranches(nn.ModuleList):
    """The sum of a block's local branches, ``(B, in, *s) -> (B, out, *s)``.

    With every branch periodic the sum is applied as one Fourier multiplier: each branch's
    kernel is a linear combination of fixed stencils, ``k_b = Σ_l θ_{b,l} ψ_{b,l}``
    (``coefficients()``, ``basis(grid)``), so the multiplier is

    .. math::

        T(\\xi) = \\sum_{b,l} \\theta_{b,l} \\, \\hat\\psi_{b,l}(\\xi),

    one small matmul against the basis multipliers ``ψ̂`` (:func:`periodic_transfer` of each
    basis stencil, computed once per grid and cached), then one ``rfftn``, one per-wavenumber
    channel mixing and one ``irfftn``. Otherwise each branch runs as a padded convolution and
    the outputs are added.

    ``reference_grid`` (periodic only): build the stencils on this grid (the training grid)
    and apply their multiplier on any other grid through :func:`transfer_on_grid`, band
    limited like the spectral conv. On the reference grid nothing changes; elsewhere the
    block computes what it computed in training on every wavenumber both grids share, where
    by default the stencils are rebuilt for the new spacing ``h`` (the paper's convergent
    local kernels, whose response at a given wavenumber still changes with ``h``).
    """

    def __init__(self, branches=None, reference_grid: Sequence[int] | None = None):
        super().__init__(branches)
        if reference_grid is not None and not all(b.boundary == "periodic" for b in self):
            raise ConfigError(
                f"local branches on a reference grid {tuple(reference_grid)} with boundary "
                f"{sorted({b.boundary for b in self})}",
                "periodic boundaries (the reference grid works through Fourier multipliers)",
                "set local_grid: null, or boundary: periodic",
            )
        self.reference_grid = None if reference_grid is None else tuple(reference_grid)
        self._basis_multipliers: dict[tuple, torch.Tensor] = {}

    def basis_multipliers(self, grid_shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        """The branches' basis stencils as multipliers on ``grid_shape``: real
        ``(W, 2, L)`` (``W`` the ``rfftn`` wavenumbers, real and imaginary parts, ``L`` the
        basis functions of all branches in order), in ``like``'s dtype and device."""
        key = (grid_shape, self.reference_grid, like.dtype, like.device)
        if key not in self._basis_multipliers:
            stencil_grid = self.reference_grid or grid_shape
            bases = [branch.basis(stencil_grid) for branch in self]
            # centre every stencil in the largest one
            size = [max(b.shape[1 + a] for b in bases) for a in range(len(grid_shape))]
            widths = [[(size[a] - b.shape[1 + a]) // 2 for a in reversed(range(len(size)))]
                      for b in bases]  # fmt: skip
            stencils = torch.cat([F.pad(b, [w for w in ws for _ in (0, 1)])
                                  for b, ws in zip(bases, widths)])  # fmt: skip
            transfer = periodic_transfer(stencils[:, None], stencil_grid)  # (L, 1, *W) complex
            if stencil_grid != grid_shape:
                transfer = transfer_on_grid(transfer, stencil_grid, grid_shape)
            multipliers = torch.view_as_real(transfer.flatten(1)).permute(1, 2, 0)
            self._basis_multipliers[key] = multipliers.to(like.dtype).to(like.device)
        return self._basis_multipliers[key]

    @full_precision
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid_shape = tuple(x.shape[2:])
        if not all(branch.boundary == "periodic" for branch in self):
            return sum(branch(x) for branch in self)
        if x.shape[1] != self[0].in_channels:
            raise ShapeError(
                f"local branch input of shape {tuple(x.shape)}",
                f"(batch, {self[0].in_channels}, *spatial)",
                "check the channel count",
            )
        if self.reference_grid is not None and len(self.reference_grid) != len(grid_shape):
            raise ShapeError(
                f"local branch input on a {len(grid_shape)}-D grid {grid_shape}",
                f"a {len(self.reference_grid)}-D grid like the reference {self.reference_grid}",
                "check the number of spatial dims",
            )
        basis = self.basis_multipliers(grid_shape, x)  # (W, 2, L)
        coefficients = torch.cat([branch.coefficients() for branch in self], dim=2)
        n_out, n_in, n_basis = coefficients.shape
        # T = Σ_l θ_l ψ̂_l, straight into the mixing's weight layout (W, in, out, [re, im])
        transfer = basis.reshape(-1, n_basis) @ coefficients.permute(2, 1, 0).reshape(n_basis, -1)
        weight = transfer.view(-1, 2, n_in, n_out).permute(0, 2, 3, 1)
        dims = tuple(range(2, x.ndim))
        x_hat = torch.fft.rfftn(x, dim=dims)
        batch = x.shape[0]
        # per-wavenumber channel mixing, the spectral core's (one real batched matmul), in its
        # layout: spectrum (W, B, [re | im] x in); one copy
        modes = torch.view_as_real(x_hat).flatten(2, -2)  # (B, in, W, 2)
        modes = modes.permute(2, 0, 3, 1).reshape(-1, batch, 2 * n_in)
        mixed = mix_modes(modes, weight)  # (W, B, [re | im] x out)
        mixed = mixed.view(-1, batch, 2, n_out).permute(1, 3, 0, 2).contiguous()
        y_hat = torch.view_as_complex(mixed).view(batch, n_out, *x_hat.shape[2:])
        return torch.fft.irfftn(y_hat, s=grid_shape, dim=dims)
