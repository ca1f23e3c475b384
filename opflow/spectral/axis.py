r"""One axis of a separable transform, as mathematics: its basis, its kept modes, its analysis
and synthesis matrices, and the one way the core applies a matrix along an axis.

Every transform in opflow is a product of per-axis maps: the planar spectral conv (a Fourier
basis on every axis), the spherical harmonic transform (Fourier in longitude, a
quadrature-weighted associated-Legendre basis per order in latitude), the GP solver's Kronecker
algebra (a Gram matrix per axis). This module states those maps plainly:

* :func:`apply_along` — ``x ×_axis A``: contract a matrix ``A (r, n)`` with one axis of ``x``;
* :class:`FourierAxis` — the truncated Fourier basis of a periodic axis (conventions of
  :mod:`opflow.spectral.fourier`: neuraloperator's ``n_modes``, forward normalisation,
  ``torch.fft.irfft``'s synthesis weights, wavenumbers that do not fit dropped);
* :class:`LegendreAxis` — the orthonormal associated-Legendre basis of a sphere grid's
  latitudes, one matrix per order (:mod:`opflow.spectral.sphere.transform`);
* :func:`reference_analysis` / :func:`reference_synthesis` — the planar transform as the
  product of its :class:`FourierAxis` maps, in float64 complex arithmetic.

The backends (``fft``, ``gemm``, ``triton``) are fast paths of the same maps, each with its own
memory layout; ``tests/test_spectral_core.py`` holds every one of them to the reference here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch

from opflow.spectral import fourier

__all__ = [
    "FourierAxis",
    "LegendreAxis",
    "apply_along",
    "fourier_axes",
    "reference_analysis",
    "reference_synthesis",
    "to_canonical",
]


def apply_along(matrix: torch.Tensor, x: torch.Tensor, axis: int) -> torch.Tensor:
    """``x ×_axis matrix``: ``matrix (r, n)`` applied to axis ``axis`` of ``x`` (size ``n``);
    the result has ``r`` entries there and ``x``'s other axes unchanged."""
    moved = x.movedim(axis, 0)
    out = matrix @ moved.reshape(moved.shape[0], -1)
    return out.reshape(matrix.shape[0], *moved.shape[1:]).movedim(0, axis)


@dataclasses.dataclass(frozen=True)
class FourierAxis:
    """The truncated Fourier basis of one periodic axis.

    ``n_modes`` counts the kept modes in total (neuraloperator's meaning); ``half`` marks the
    last axis of a real field, which keeps the non-negative wavenumbers ``0..n_modes//2``
    (their negatives are the conjugates), every other axis ``-(n_modes//2)..(n_modes-1)//2``.
    """

    n_modes: int
    half: bool

    @property
    def frequencies(self) -> list[int]:
        """Kept integer wavenumbers, in storage order."""
        return fourier.kept_frequencies(self.n_modes, half=self.half)

    @property
    def min_points(self) -> int:
        """Fewest grid points on which the kept wavenumbers are distinct."""
        return fourier.min_grid_points(self.n_modes, half=self.half)

    def analysis(self, n: int) -> torch.Tensor:
        """``E[k, j] = e^{-2πi k j / n} / n`` on ``n`` points: complex128 ``(m, n)``."""
        return fourier.analysis_complex(n, self.n_modes, self.half)

    def synthesis(self, n_out: int) -> torch.Tensor:
        """``G[j, k] = c_k e^{2πi k j / n_out}``: complex128 ``(n_out, m)``; ``c_k`` is 1 on a
        full axis, ``irfft``'s weights on the half axis, 0 for wavenumbers that do not fit."""
        return fourier.synthesis_complex(n_out, self.n_modes, self.half)


@dataclasses.dataclass(frozen=True)
class LegendreAxis:
    """The latitude basis of a sphere grid: orthonormal associated Legendre functions
    ``P̄_l^m(cos θ)`` for degrees ``l < lmax`` and orders ``m < mmax``, one matrix per order."""

    lmax: int
    mmax: int

    def analysis(self, grid) -> torch.Tensor:
        """Quadrature-weighted ``2π w_k P̄_l^m(cos θ_k)``: float64 ``(mmax, lmax, nlat)``."""
        from opflow.spectral.sphere.transform import legendre_analysis

        return legendre_analysis(grid, self.lmax, self.mmax, torch.float64, torch.device("cpu"))

    def synthesis(self, grid) -> torch.Tensor:
        """``P̄_l^m(cos θ_k)`` on ``grid``'s colatitudes: float64 ``(mmax, nlat, lmax)``."""
        from opflow.spectral.sphere.transform import legendre_synthesis

        return legendre_synthesis(grid, self.lmax, self.mmax, torch.float64, torch.device("cpu"))


def fourier_axes(n_modes: Sequence[int]) -> list[FourierAxis]:
    """The axes of a planar real-field transform: full axes, then the half (rfft) axis."""
    return [FourierAxis(int(m), half=a == len(n_modes) - 1) for a, m in enumerate(n_modes)]


def reference_analysis(x: torch.Tensor, n_modes: Sequence[int]) -> torch.Tensor:
    """Kept coefficients of real ``x`` ``(B, C, *s)``: complex128 ``(B, C, *kept)``, each axis
    in :attr:`FourierAxis.frequencies` order."""
    out = x.to(torch.complex128)
    for axis, basis in enumerate(fourier_axes(n_modes)):
        out = apply_along(basis.analysis(x.shape[2 + axis]), out, 2 + axis)
    return out


def reference_synthesis(
    coefficients: torch.Tensor, n_modes: Sequence[int], output_shape: Sequence[int]
) -> torch.Tensor:
    """Real field ``(B, C, *output_shape)`` from coefficients ``(B, C, *kept)``."""
    out = coefficients.to(torch.complex128)
    for axis, basis in enumerate(fourier_axes(n_modes)):
        out = apply_along(basis.synthesis(output_shape[axis]), out, 2 + axis)
    # the half axis's weights c_k count each coefficient and its conjugate: the real part
    return out.real


def to_canonical(coefficients: torch.Tensor) -> torch.Tensor:
    """Complex ``(B, C, *kept)`` -> the backends' canonical real layout ``(M_total, B, 2C)``
    (modes row-major, then batch, then ``[real | imaginary]`` channel halves)."""
    b, c, *kept = coefficients.shape
    parts = torch.view_as_real(coefficients.permute(*range(2, 2 + len(kept)), 0, 1))
    return parts.transpose(-1, -2).reshape(math.prod(kept), b, 2 * c)
