"""The sum of a Fourier block's local branches (LocalNO), as one Fourier multiplier on periodic
grids.

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

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.spectral.conv import mix_modes
from opflow.spectral.precision import full_precision

__all__ = ["LocalBranches", "periodic_transfer", "transfer_on_grid"]


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
