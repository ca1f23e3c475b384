r"""Fourier basis of one periodic, uniform grid axis, truncated to a set of kept modes.

Conventions (the same as neuraloperator's ``SpectralConv`` so that weights transfer as-is):

* ``n_modes`` counts the modes kept along an axis *in total*. On a full (complex) axis the kept
  integer wavenumbers are ``k = -(M//2), ..., (M-1)//2`` (``M`` of them, ordered from the most
  negative, which is neuraloperator's fftshifted order). On the last axis of a real field
  (the "half" axis of an rfft) they are ``k = 0, ..., M//2``: ``M//2 + 1`` non-negative
  wavenumbers, the negative ones being their complex conjugates.
* Normalisation is "forward": analysis divides by the number of grid points ``n``, synthesis
  does not. A spectral coefficient is therefore the Fourier coefficient of the continuous
  periodic function, independent of resolution, which is what makes the same weights valid
  on every grid.

Analysis of grid values ``x_j`` (``j = 0..n-1``) to coefficients, and synthesis on a grid of
``n'`` points:

.. math::

    \hat x_k = \frac{1}{n} \sum_j x_j e^{-2\pi i k j / n},
    \qquad
    y_j = \sum_k c_k \,\mathrm{Re}\big(\hat y_k e^{2\pi i k j / n'}\big)

On a full axis ``c_k = 1`` and the real part is not taken (that axis stays complex). On the half
axis ``c_0 = 1``, ``c_{n'/2} = 1`` (the Nyquist wavenumber of an even output grid) and
``c_k = 2`` otherwise, exactly what ``torch.fft.irfft`` computes. A kept wavenumber that does
not fit on the output grid (``k`` outside ``[-(n'//2), (n'-1)//2]`` on a full axis, ``k > n'//2``
on the half axis) is dropped: downsampling truncates, it never aliases.

The GEMM backend applies these matrices in real form (:func:`real_block`), one axis at a
time; :func:`analysis_step` and :func:`synthesis_step` give each step's matrix with its rows and
columns ordered for that backend's layouts.
"""

from __future__ import annotations

import math

import torch

from opflow.errors import ResolutionError
from opflow.spectral.cache import constant_cache

__all__ = [
    "kept_frequencies",
    "n_kept",
    "min_grid_points",
    "check_grid",
    "fits",
    "analysis_complex",
    "synthesis_complex",
    "real_block",
    "step_frequencies",
    "analysis_step",
    "synthesis_step",
    "transposed",
]


def kept_frequencies(n_modes: int, *, half: bool) -> list[int]:
    """Integer wavenumbers kept along one axis, in storage order."""
    if n_modes < 1:
        raise ResolutionError(
            f"n_modes={n_modes} keeps no modes", "n_modes >= 1 on every axis", "raise n_modes"
        )
    if half:
        return list(range(0, n_modes // 2 + 1))
    return list(range(-(n_modes // 2), n_modes - n_modes // 2))


def n_kept(n_modes: int, *, half: bool) -> int:
    """Number of stored coefficients along one axis: ``M`` (full) or ``M//2 + 1`` (half)."""
    return n_modes // 2 + 1 if half else n_modes


def min_grid_points(n_modes: int, *, half: bool) -> int:
    """Fewest grid points on which every kept wavenumber is distinct (no aliasing)."""
    return 2 * (n_modes // 2) if half else n_modes


def check_grid(shape: tuple[int, ...], n_modes: tuple[int, ...], what: str = "input") -> None:
    """Raise :class:`ResolutionError` naming the axis if ``shape`` cannot hold ``n_modes``."""
    d = len(n_modes)
    for axis, (n, m) in enumerate(zip(shape, n_modes, strict=True)):
        need = min_grid_points(m, half=axis == d - 1)
        if n < need:
            raise ResolutionError(
                f"The {what} grid has {n} points along spatial axis {axis} (of {d}), but "
                f"n_modes[{axis}]={m} needs at least {need} points to resolve its wavenumbers",
                f"a grid of at least {need} points along axis {axis}",
                f"use a finer grid along axis {axis} or a model with n_modes[{axis}] <= {n}",
            )


def _angles(n_points: int, freqs: list[int], n_period: int) -> torch.Tensor:
    """``2*pi*k*j/n_period`` as float64 ``(n_points, len(freqs))``, exact via integer modulo."""
    j = torch.arange(n_points, dtype=torch.int64)[:, None]
    k = torch.tensor(freqs, dtype=torch.int64)[None, :]
    return (2.0 * math.pi / n_period) * torch.remainder(j * k, n_period).to(torch.float64)


def fits(k: int, n: int) -> bool:
    """Whether wavenumber ``k`` has its own place on a full axis of ``n`` points."""
    return -(n // 2) <= k <= (n - 1) // 2


def _synthesis_weights(freqs: list[int], n_out: int, half: bool) -> torch.Tensor:
    """``c_k`` of the module docstring; zero for wavenumbers that do not fit on ``n_out``."""
    if half:
        w = [0.0 if k > n_out // 2 else 1.0 if k == 0 or 2 * k == n_out else 2.0 for k in freqs]
    else:
        w = [1.0 if fits(k, n_out) else 0.0 for k in freqs]
    return torch.tensor(w, dtype=torch.float64)


def _analysis_at(n: int, freqs: list[int]) -> torch.Tensor:
    """``E[k, j] = exp(-2 pi i k j / n) / n`` for the given wavenumbers, complex128."""
    theta = _angles(n, freqs, n).T
    return torch.polar(torch.full_like(theta, 1.0 / n), -theta)


def _synthesis_at(n_out: int, freqs: list[int], weights: torch.Tensor) -> torch.Tensor:
    """``G[j, k] = w_k exp(2 pi i k j / n_out)``, complex128 ``(n_out, len(freqs))``."""
    theta = _angles(n_out, freqs, n_out)
    return torch.polar(weights.expand_as(theta), theta)


def analysis_complex(n: int, n_modes: int, half: bool) -> torch.Tensor:
    """Complex analysis matrix ``E[k, j] = exp(-2 pi i k j / n) / n``, ``(m, n)`` complex128."""
    return _analysis_at(n, kept_frequencies(n_modes, half=half))


def synthesis_complex(n_out: int, n_modes: int, half: bool) -> torch.Tensor:
    """Complex synthesis matrix ``G[j, k] = c_k exp(2 pi i k j / n_out)``, ``(n_out, m)``."""
    freqs = kept_frequencies(n_modes, half=half)
    return _synthesis_at(n_out, freqs, _synthesis_weights(freqs, n_out, half))


def real_block(mat: torch.Tensor) -> torch.Tensor:
    """Real form ``[[Re, -Im], [Im, Re]]`` ``(2r, 2c)`` of a complex ``(r, c)`` matrix.

    It maps ``[z_re; z_im]`` (real and imaginary parts stacked, "part-major") to the same form
    of ``mat @ z``.
    """
    re, im = mat.real, mat.imag
    return torch.cat((torch.cat((re, -im), dim=1), torch.cat((im, re), dim=1)), dim=0)


def interleave(mat: torch.Tensor, dim: int) -> torch.Tensor:
    """Reorder a part-major axis ``(2, m)`` of ``mat`` to mode-major ``(m, 2)``."""
    moved = mat.movedim(dim, 0)
    m = moved.shape[0] // 2
    out = moved.reshape(2, m, *moved.shape[1:]).transpose(0, 1).reshape(moved.shape)
    return out.movedim(0, dim)


def _conjugated(block: torch.Tensor, dim: int) -> torch.Tensor:
    """``block`` with the imaginary half of a part-major axis negated (a complex conjugate)."""
    out = block.clone()
    out.narrow(dim, out.shape[dim] // 2, out.shape[dim] // 2).neg_()
    return out


def step_frequencies(n_modes: int, axis: int, n_dim: int) -> list[int]:
    """Wavenumbers that gemm step ``axis`` of ``n_dim`` computes.

    A real field's coefficients satisfy ``X[-k] = conj(X[k])`` (every axis negated), so the
    steps compute axis 0 for ``k_0 >= 0`` only; a stored coefficient with ``k_0 < 0`` is the
    conjugate of one with ``-k``. That needs the axes in between for ``-k`` as well:
    symmetric ranges ``-(M//2) .. M//2``. The last axis takes its non-negative wavenumbers
    (and, for ``n_dim > 1``, their mirror images; see :func:`analysis_step`).
    """
    if axis == 0 or axis == n_dim - 1:
        return kept_frequencies(n_modes, half=True)
    return list(range(-(n_modes // 2), n_modes // 2 + 1))


@constant_cache(maxsize=512)
def analysis_step(
    n: int, n_modes: int, axis: int, n_dim: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Real matrix of analysis step ``axis`` of ``n_dim`` (see :mod:`..backends.gemm`).

    Axis 0 takes real input: ``(2m, n)``; later axes take complex input with the
    real/imaginary pair just before the axis: ``(2m, 2n)``, ``m`` the number of
    :func:`step_frequencies`. Output rows are mode-major ``(m, 2)`` except on the last axis,
    where they are part-major ``(2, m)``; for ``n_dim > 1`` the last axis also gives the
    mirror images ``conj(sum_j z_j e^{+2 pi i k j / n}) / n`` (the coefficients at ``-k``,
    conjugated) in a second block of rows: ``(2, 2, m)`` (direct/mirrored, part, mode).
    """
    last = axis == n_dim - 1
    block = real_block(_analysis_at(n, step_frequencies(n_modes, axis, n_dim)))
    if axis == 0:
        block = block[:, :n]
    if not last:
        mat = interleave(block, 0)
    elif n_dim == 1:
        mat = block
    else:  # the mirror image conj(conj(E) z) is E applied to the conjugated input
        mat = torch.cat((block, _conjugated(block, 1)), dim=0)
    return mat.to(dtype=dtype, device=device).contiguous()


@constant_cache(maxsize=512)
def synthesis_step(
    n_out: int, n_modes: int, axis: int, n_dim: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Real matrix of synthesis step ``axis`` of ``n_dim``: the mirror of :func:`analysis_step`.

    Later axes map complex to complex, ``(2 n_out, 2m)``, with output rows part-major; axis 0
    takes the real part at the end, ``(n_out, 2m)``. Input columns are ordered as the
    analysis step's output rows (the last axis of ``n_dim > 1`` takes direct and mirrored
    coefficients, ``4m`` columns). Only the last axis carries the weights ``c_k`` of the module
    docstring; on the other axes a wavenumber that does not fit the output grid is dropped
    before the steps (by the gemm backend's slot map), since with mirroring one step column
    serves both ``k`` and ``-k``.
    """
    last = axis == n_dim - 1
    freqs = step_frequencies(n_modes, axis, n_dim)
    if last:
        weights = _synthesis_weights(freqs, n_out, half=True)
    else:
        weights = torch.ones(len(freqs), dtype=torch.float64)
    block = real_block(_synthesis_at(n_out, freqs, weights))
    if axis == 0:
        block = block[:n_out]
    if not last:
        mat = interleave(block, 1)
    elif n_dim == 1:
        mat = block
    else:  # a mirrored coefficient X contributes conj(X e^{2 pi i k j / n})
        mat = torch.cat((block, _conjugated(block, 0)), dim=1)
    return mat.to(dtype=dtype, device=device).contiguous()


@constant_cache(maxsize=512)
def transposed(mat: torch.Tensor) -> torch.Tensor:
    """Contiguous transpose, cached (the inputs come from the caches above, never mutated)."""
    return mat.T.contiguous()
