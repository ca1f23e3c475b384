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
from opflow.layers.channel_mlp import ChannelLinear
from opflow.spectral import SpectralConv
from opflow.spectral.cache import ConstantCache
from opflow.spectral.multiplier import Extra, SplitBasis, fourier_multiply, kept_rows
from opflow.spectral.precision import full_precision

__all__ = ["LocalBranches", "circular_kernel", "shared_band"]


def circular_kernel(kernel: torch.Tensor, grid_shape: Sequence[int]) -> torch.Tensor:
    """The field ``g`` on a periodic grid whose circular convolution is the cross-correlation
    with ``kernel``: ``y(p) = Σ_d kernel(d) x(p + d) = Σ_e g(e) x(p - e)``, so ``g(e) =
    kernel(-e)``, centred at the origin.

    ``kernel`` ``(..., k_1, ..., k_d)`` (odd sizes, centre at ``k // 2``) -> ``(..., *grid)``.
    Its Fourier coefficients (times the number of points) are the multiplier ``T`` with
    ``ŷ = T x̂``. Each ``k_i`` must not exceed ``n_i``.
    """
    n_dim = len(grid_shape)
    sizes = kernel.shape[-n_dim:]
    if any(k > n for k, n in zip(sizes, grid_shape)):
        raise ShapeError(
            f"a local kernel of {tuple(sizes)} points on a grid of {tuple(grid_shape)}",
            "a grid at least as large as the kernel on every axis",
            "use a finer grid or a smaller disco_radius",
        )
    dims = tuple(range(kernel.ndim - n_dim, kernel.ndim))
    placed = kernel.new_zeros(*kernel.shape[:-n_dim], *grid_shape)
    placed[(..., *(slice(0, k) for k in sizes))] = kernel.flip(dims)
    return placed.roll([-(k // 2) for k in sizes], dims=dims)


def shared_band(grid_shape: Sequence[int], reference_grid: Sequence[int] | None) -> tuple:
    """``n_modes`` of the transform the branches use on ``grid_shape``: every wavenumber of
    the grid, or with a reference grid those both grids resolve below their Nyquist
    (``|k| < min(r, n) / 2`` per axis), the band limit that makes the spectral conv resolution
    invariant. On the reference grid itself, every wavenumber."""
    if reference_grid is None or tuple(reference_grid) == tuple(grid_shape):
        return tuple(grid_shape)  # on its own grid a multiplier keeps every wavenumber
    return tuple(2 * ((min(r, n) - 1) // 2) + 1 for r, n in zip(reference_grid, grid_shape))


class LocalBranches(nn.ModuleList):
    """The sum of a block's local branches, ``(B, in, *s) -> (B, out, *s)``.

    With every branch periodic the sum is applied as one Fourier multiplier: each branch's
    kernel is a linear combination of fixed stencils, ``k_b = Σ_l θ_{b,l} ψ_{b,l}``
    (``coefficients()``, ``basis(grid)``), so the multiplier is

    .. math::

        T(\\xi) = \\sum_{b,l} \\theta_{b,l} \\, \\hat\\psi_{b,l}(\\xi),

    a combination of the basis multipliers ``ψ̂`` (the ``rfftn`` of each basis stencil's
    :func:`circular_kernel`, computed once per grid and cached), applied on ``rfftn``'s own
    layout by :func:`~opflow.spectral.multiplier.fourier_multiply` (every wavenumber is kept,
    so the core's truncated canonical layout would only add copies; ``T`` is built chunk by
    chunk of wavenumbers, never whole). Otherwise each branch runs as a padded
    convolution and the outputs are added.

    ``reference_grid`` (periodic only): build the stencils on this grid (the training grid)
    and apply their multiplier on any other grid on the wavenumbers both resolve
    (:func:`shared_band`), band limited like the spectral conv. On the reference grid nothing
    changes; elsewhere the
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
        self._basis_multipliers = ConstantCache(maxsize=8)

    def basis_multipliers(self, grid_shape: tuple[int, ...], like: torch.Tensor) -> SplitBasis:
        """The branches' basis stencils as multipliers on ``grid_shape``'s real-FFT wavenumbers:
        ``(M, L)`` (``M`` the points of ``torch.fft.rfftn``'s output in row-major order, ``L``
        the basis functions of all branches in order; zero outside :func:`shared_band`),
        factored in float64 (:class:`~opflow.spectral.multiplier.SplitBasis`), in ``like``'s
        precision and device."""
        key = (grid_shape, self.reference_grid, like.dtype, like.device)
        return self._basis_multipliers.get(key, lambda: self._build_multipliers(grid_shape, like))

    def _build_multipliers(self, grid_shape: tuple[int, ...], like: torch.Tensor):
        stencil_grid = self.reference_grid or grid_shape
        bases = [branch.basis(stencil_grid) for branch in self]
        # centre every stencil in the largest one
        size = [max(b.shape[1 + a] for b in bases) for a in range(len(grid_shape))]
        widths = [[(size[a] - b.shape[1 + a]) // 2 for a in reversed(range(len(size)))]
                  for b in bases]  # fmt: skip
        stencils = torch.cat([F.pad(b, [w for w in ws for _ in (0, 1)])
                              for b, ws in zip(bases, widths)])  # fmt: skip
        kernels = circular_kernel(stencils, stencil_grid).double()  # (L, *stencil_grid)
        dims = tuple(range(1, kernels.ndim))
        # unnormalised DFT: the forward-normalised coefficients times the points
        spectrum = torch.fft.rfftn(kernels, dim=dims)
        if tuple(stencil_grid) != tuple(grid_shape):
            spectrum = _on_grid(spectrum, shared_band(grid_shape, stencil_grid), grid_shape)
        return SplitBasis.of(spectrum.flatten(1).T).to(like.dtype, like.device)

    @property
    def is_multiplier(self) -> bool:
        """Whether the branches run as one Fourier multiplier (every branch periodic)."""
        return all(branch.boundary == "periodic" for branch in self)

    @full_precision
    def forward(
        self,
        x: torch.Tensor,
        conv: SpectralConv | None = None,
        skip: ChannelLinear | None = None,
    ) -> torch.Tensor:
        """The branches' sum; with ``conv`` and/or ``skip`` (periodic branches only), also
        ``conv(x) + skip(x)`` in the same multiplier (an FNO block's linear part: the
        transforms carry all three, :class:`~opflow.spectral.multiplier.Extra`)."""
        grid_shape = tuple(x.shape[2:])
        if not self.is_multiplier:
            if conv is not None or skip is not None:
                raise ConfigError(
                    "a spectral conv or skip folded into local branches that are not periodic",
                    "periodic local branches (one Fourier multiplier)",
                    "add the conv and the skip separately",
                )
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
        basis = self.basis_multipliers(grid_shape, x)  # (M, L), factored
        coefficients = torch.cat([branch.coefficients() for branch in self], dim=2)
        # T(ξ) = Σ_l θ_l ψ̂_l(ξ) on rfftn's own layout: every wavenumber is kept, so the
        # core's truncated canonical layout would only add copies
        return fourier_multiply(x, basis, coefficients.permute(2, 1, 0), _extra(x, conv, skip))


def _extra(x: torch.Tensor, conv: SpectralConv | None, skip: ChannelLinear | None) -> Extra:
    """``conv`` and ``skip`` as maps riding along with the branches' multiplier."""
    extra, biases = Extra(), []
    if conv is not None:
        conv.check_input(x)
        weight = conv.weight
        extra.modes = weight.reshape(-1, *weight.shape[-3:])
        extra.rows = kept_rows(conv.n_modes, tuple(x.shape[2:]))
        if conv.bias is not None:
            biases.append(conv.bias.view(-1))
    if skip is not None:
        extra.channel = skip.weight.T
        if skip.bias is not None:
            biases.append(skip.bias)
    extra.bias = sum(biases) if biases else None
    return extra


def _on_grid(spectrum: torch.Tensor, band: tuple[int, ...], grid_shape: tuple[int, ...]):
    """A real-FFT spectrum ``(L, *half)`` of one grid moved onto ``grid_shape``'s real-FFT
    layout, keeping the wavenumbers ``|k| <= (band - 1) // 2`` per axis (zero elsewhere)."""
    last = len(grid_shape) - 1
    source_sizes = spectrum.shape[1:]
    sources, targets = [], []
    for axis, (m, n) in enumerate(zip(band, grid_shape)):
        k_max = (m - 1) // 2
        k = torch.arange(0 if axis == last else -k_max, k_max + 1)
        if axis == last:
            sources.append(k)
            targets.append(k)
        else:
            sources.append(k % source_sizes[axis])
            targets.append(k % n)
    half = (*grid_shape[:-1], grid_shape[-1] // 2 + 1)
    placed = spectrum.new_zeros(spectrum.shape[0], *half)
    placed[(slice(None), *torch.meshgrid(*targets, indexing="ij"))] = spectrum[
        (slice(None), *torch.meshgrid(*sources, indexing="ij"))
    ]
    return placed
