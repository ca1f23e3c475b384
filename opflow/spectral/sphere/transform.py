r"""Spherical harmonic transform of real fields: Fourier in longitude, Legendre in latitude.

With orthonormal harmonics :math:`Y_l^m(\theta, \lambda) = \bar P_l^m(\cos\theta) e^{im\lambda}`
(Condon–Shortley phase, torch-harmonics' ``norm="ortho"``), a real field is

.. math::

    f(\theta, \lambda) = \sum_{l < L} \sum_{0 \le m < M} c_m \,
        \mathrm{Re}\big(\hat f_l^m \, Y_l^m(\theta, \lambda)\big),
    \qquad
    \hat f_l^m = 2\pi \sum_k w_k \bar P_l^m(\cos\theta_k) \,
        \frac{1}{n_{lon}} \sum_j f(\theta_k, \lambda_j) e^{-im\lambda_j}

(``c_0 = 1``, ``c_m = 2`` otherwise, ``c = 1`` at the Nyquist order of an even output grid).
The coefficients equal torch-harmonics' ``RealSHT`` output, ``(..., L, M)`` complex; a
band-limited field (``l < L`` with ``L`` within the grid's exact range) round-trips exactly.

Both steps are separable per-axis maps, like the planar core's: the longitude step is the
planar truncated Fourier analysis/synthesis (``fft``: ``torch.fft.rfft``/``irfft``; ``gemm``:
the truncated real DFT matrix of :mod:`opflow.spectral.fourier`), the latitude step one batched
GEMM over the orders ``m`` with the quadrature-weighted Legendre matrix ``(M, L, nlat)``
(analysis) or the Legendre matrix ``(M, nlat_out, L)`` (synthesis). Synthesis may target any
grid, of any kind and size: that is how the same spectral weights serve every resolution.

Internal spectral layout (``spherical spectrum``): real ``(M, L, 2, B, C)`` — orders, degrees,
real/imaginary part, batch, channel. It is the layout the ``gemm`` transforms produce and take
without a copy: the real DFT's rows are ordered (order, part), so ``E x^T`` is
``((m, part), (b, c), lat)`` and each order's ``(2BC, nlat)`` block is one operand of the
Legendre GEMM, whose output per order is ``(L, 2BC)``; synthesis runs the same GEMMs
transposed. (Moving the orders outermost through a copy, as the ``fft`` path must, costs more
than the transforms at 128x256.)
"""

from __future__ import annotations

import torch
from torch_harmonics.legendre import legpoly

from opflow.errors import BackendError, ResolutionError, ShapeError
from opflow.spectral import fourier
from opflow.spectral.backends import truncated_dft_pays
from opflow.spectral.cache import constant_cache
from opflow.spectral.sphere.grid import SphereGrid, as_output_grid

__all__ = [
    "SPHERE_BACKENDS",
    "analyze",
    "synthesize",
    "sht",
    "isht",
    "legendre_analysis",
    "legendre_synthesis",
    "select_sphere_backend",
    "sphere_resample",
]

SPHERE_BACKENDS = ("fft", "gemm")


@constant_cache(maxsize=128)
def _legendre(grid: SphereGrid, lmax: int, mmax: int) -> torch.Tensor:
    """Orthonormal :math:`\\bar P_l^m(\\cos\\theta_k)` ``(mmax, lmax, nlat)`` float64."""
    return legpoly(mmax, lmax, torch.cos(grid.colatitudes), norm="ortho", csphase=True)


def _without_denormals(mat: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``mat`` in ``dtype`` with the entries below ``tiny / eps`` of that dtype set to zero.

    High orders' Legendre functions near the poles fall to 1e-45 and below: in float32 they
    become denormal numbers, and so do the products of the GEMMs that use them, which x86
    cores compute in microcode, tens of times slower (the 128x256 synthesis GEMM ran 4x
    slower with 1% denormal operands). Entries this small change no sum of terms of order
    one (they are below its rounding), so zeroing them leaves the transform as accurate.
    """
    info = torch.finfo(dtype)
    return torch.where(mat.abs() < info.tiny / info.eps, 0.0, mat).to(dtype)


@constant_cache(maxsize=128)
def legendre_analysis(
    grid: SphereGrid, lmax: int, mmax: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Quadrature-weighted analysis matrix ``2π w_k P_l^m(cos θ_k)``, ``(mmax, lmax, nlat)``."""
    mat = _legendre(grid, lmax, mmax) * (2 * torch.pi * grid.quadrature_weights)
    return _without_denormals(mat, dtype).to(device=device).contiguous()


@constant_cache(maxsize=128)
def legendre_synthesis(
    grid: SphereGrid, lmax: int, mmax: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Synthesis matrix ``P_l^m(cos θ_k)`` on ``grid``'s colatitudes, ``(mmax, nlat, lmax)``."""
    mat = _legendre(grid, lmax, mmax).transpose(1, 2)
    return _without_denormals(mat, dtype).to(device=device).contiguous()


@constant_cache(maxsize=128)
def longitude_analysis(nlon: int, mmax: int, dtype: torch.dtype, device: torch.device):
    """Real truncated DFT ``(2*mmax, nlon)``, rows ordered (order, part): ``Re E_m`` then
    ``Im E_m`` for ``m = 0..mmax-1``."""
    mat = fourier.analysis_complex(nlon, 2 * mmax - 1, half=True)  # (mmax, nlon)
    parts = torch.stack((mat.real, mat.imag), dim=1).reshape(2 * mmax, nlon)
    return parts.to(dtype=dtype, device=device).contiguous()


@constant_cache(maxsize=128)
def longitude_synthesis(nlon: int, mmax: int, dtype: torch.dtype, device: torch.device):
    """Real synthesis ``(nlon, 2*mmax)``, columns ordered (order, part): ``Re G_m, -Im G_m``,
    so ``y = Re(G z)`` for ``z = zr + i zi`` interleaved per order.

    Orders above the output grid's Nyquist have zero columns (dropped, never aliased).
    """
    mat = fourier.synthesis_complex(nlon, 2 * mmax - 1, half=True)  # (nlon, mmax)
    parts = torch.stack((mat.real, -mat.imag), dim=2).reshape(nlon, 2 * mmax)
    return parts.to(dtype=dtype, device=device).contiguous()


def select_sphere_backend(name: str, grid: SphereGrid, mmax: int) -> str:
    """Resolve ``name`` (``auto``, ``fft`` or ``gemm``) for one grid.

    ``auto`` takes the truncated DFT (``gemm``) where the core's one rule says it pays
    (:func:`opflow.spectral.backends.truncated_dft_pays`, on the kept fraction of the
    longitude orders), and ``torch.fft`` otherwise.
    """
    if name not in (*SPHERE_BACKENDS, "auto"):
        raise BackendError(
            f"Unknown spherical transform backend {name!r}",
            f"one of {[*SPHERE_BACKENDS, 'auto']}",
            "pass backend='auto' to let opflow choose",
        )
    if name != "auto":
        return name
    pays = truncated_dft_pays(mmax / grid.max_order, grid.nlat * grid.nlon)
    return "gemm" if pays else "fft"


_BLOCKED_COPY_BYTES = 4 * 2**20


def _permuted_copy(x: torch.Tensor, dims: tuple[int, ...], by: int) -> torch.Tensor:
    """``x.permute(dims).contiguous()``, for large tensors one index of the output's dim
    ``by`` at a time. Moving the batch from the innermost to the outermost dim in one pass
    reads every value from a different cache line (14 ms for the 17 MB of a 128x256 SHT's
    coefficients, batch 512); block by block, each block's reads stay in cache (2.6 ms)."""
    view = x.permute(dims)
    if x.numel() * x.element_size() <= _BLOCKED_COPY_BYTES:
        return view.contiguous()
    out = torch.empty(view.shape, dtype=x.dtype, device=x.device)
    for index in range(view.shape[by]):
        out.select(by, index).copy_(view.select(by, index))
    return out


def _check_field(x: torch.Tensor, grid: SphereGrid) -> None:
    if x.ndim != 4 or tuple(x.shape[-2:]) != grid.shape:
        raise ShapeError(
            f"A field of shape {tuple(x.shape)} does not lie on the {grid.kind} grid "
            f"{grid.nlat} x {grid.nlon}",
            f"(batch, channel, {grid.nlat}, {grid.nlon})",
            "pass (batch, channel, lat, lon) data on the grid the transform was given",
        )


def check_band_limit(grid: SphereGrid, lmax: int, mmax: int, what: str = "input") -> None:
    """Raise :class:`ResolutionError` if ``grid`` cannot resolve degrees < lmax, orders < mmax."""
    if lmax > grid.max_degree or mmax > grid.max_order:
        raise ResolutionError(
            f"The {what} grid ({grid.kind}, {grid.nlat} x {grid.nlon}) resolves degrees "
            f"l < {grid.max_degree} and orders m < {grid.max_order}, but the transform keeps "
            f"l < {lmax}, m < {mmax}",
            "lmax <= the grid's max_degree and mmax <= nlon // 2 + 1",
            f"use a finer {what} grid or fewer modes",
        )


def analyze(
    x: torch.Tensor, grid: SphereGrid, lmax: int, mmax: int, backend: str = "auto"
) -> torch.Tensor:
    """Real field ``(B, C, nlat, nlon)`` -> spherical spectrum ``(mmax, lmax, 2, B, C)``."""
    _check_field(x, grid)
    check_band_limit(grid, lmax, mmax)
    batch, channels = x.shape[:2]
    if select_sphere_backend(backend, grid, mmax) == "fft":
        coeffs = torch.fft.rfft(x, dim=-1, norm="forward")[..., :mmax]
        parts = torch.view_as_real(coeffs)  # (B, C, nlat, mmax, 2)
        parts = parts.permute(3, 4, 0, 1, 2).reshape(mmax, -1, grid.nlat)
    else:  # ((m, part), (b, c), lat) straight from the GEMM: no copy
        mat = longitude_analysis(grid.nlon, mmax, x.dtype, x.device)
        parts = (mat @ x.reshape(-1, grid.nlon).T).view(mmax, -1, grid.nlat)
    legendre = legendre_analysis(grid, lmax, mmax, x.dtype, x.device)  # (mmax, lmax, nlat)
    spec = torch.bmm(legendre, parts.transpose(1, 2))  # (mmax, lmax, 2*B*C)
    return spec.view(mmax, lmax, 2, batch, channels)


def synthesize(spec: torch.Tensor, grid: SphereGrid, backend: str = "auto") -> torch.Tensor:
    """Spherical spectrum ``(mmax, lmax, 2, B, C)`` -> real field ``(B, C, nlat, nlon)`` on
    ``grid`` (any kind and size; orders above its Nyquist are dropped)."""
    mmax, lmax, _, batch, channels = spec.shape
    legendre = legendre_synthesis(grid, lmax, mmax, spec.dtype, spec.device)  # (mmax, nlat, L)
    # ((m, part), (b, c), lat): the transposed Legendre GEMM, no copy
    parts = torch.bmm(spec.reshape(mmax, lmax, -1).transpose(1, 2), legendre.transpose(1, 2))
    if select_sphere_backend(backend, grid, mmax) == "fft":
        kept = min(mmax, grid.max_order)
        coeffs = spec.new_zeros(batch, channels, grid.nlat, grid.nlon // 2 + 1, 2)
        parts = parts.view(mmax, 2, batch, channels, grid.nlat)[:kept]
        coeffs[:, :, :, :kept] = parts.permute(2, 3, 4, 0, 1)
        # the DC and Nyquist orders are real on a real field; irfft assumes so
        coeffs[:, :, :, 0, 1] = 0
        if grid.nlon % 2 == 0 and kept == grid.max_order:
            coeffs[:, :, :, kept - 1, 1] = 0
        return torch.fft.irfft(torch.view_as_complex(coeffs), n=grid.nlon, dim=-1, norm="forward")
    mat = longitude_synthesis(grid.nlon, mmax, spec.dtype, spec.device)  # (nlon, 2*mmax)
    field = parts.reshape(2 * mmax, -1).T @ mat.T  # (B*C*nlat, nlon)
    return field.view(batch, channels, grid.nlat, grid.nlon)


def sht(
    x: torch.Tensor,
    grid: SphereGrid,
    lmax: int | None = None,
    mmax: int | None = None,
    backend: str = "auto",
) -> torch.Tensor:
    """Forward SHT of real ``(..., nlat, nlon)`` -> complex ``(..., lmax, mmax)``.

    The same coefficients as ``torch_harmonics.RealSHT(nlat, nlon, lmax, mmax, grid=kind)``.
    Defaults: ``lmax = grid.max_degree``, ``mmax = min(lmax, grid.max_order)``.
    """
    lmax = grid.max_degree if lmax is None else int(lmax)
    mmax = min(lmax, grid.max_order) if mmax is None else int(mmax)
    lead = x.shape[:-2]
    spec = analyze(x.reshape(1, -1, *x.shape[-2:]), grid, lmax, mmax, backend)
    parts = _permuted_copy(spec.view(mmax, lmax, 2, -1), (3, 1, 0, 2), by=1)  # (N, L, M, 2)
    return torch.view_as_complex(parts).reshape(*lead, lmax, mmax)


def isht(coeffs: torch.Tensor, grid: SphereGrid, backend: str = "auto") -> torch.Tensor:
    """Inverse SHT of complex ``(..., lmax, mmax)`` -> real ``(..., nlat, nlon)`` on ``grid``."""
    if not coeffs.is_complex() or coeffs.ndim < 2:
        raise ShapeError(
            f"isht got a {coeffs.dtype} tensor of shape {tuple(coeffs.shape)}",
            "complex coefficients (..., lmax, mmax)",
            "pass the output of sht()",
        )
    lead, (lmax, mmax) = coeffs.shape[:-2], coeffs.shape[-2:]
    parts = torch.view_as_real(coeffs.reshape(-1, lmax, mmax))  # (N, lmax, mmax, 2)
    spec = _permuted_copy(parts, (2, 1, 3, 0), by=1).unsqueeze(3)  # (mmax, lmax, 2, 1, N)
    field = synthesize(spec, grid, backend)  # (1, N, nlat, nlon)
    return field.reshape(*lead, grid.nlat, grid.nlon)


def sphere_resample(
    x: torch.Tensor, output_shape: SphereGrid | tuple[int, int], kind: str = "equiangular"
) -> torch.Tensor:
    """Band-limited interpolation of ``x`` ``(B, C, nlat, nlon)`` (a ``kind`` grid) onto
    ``output_shape``: every degree and order both grids resolve is kept, the rest dropped."""
    grid = SphereGrid(x.shape[-2], x.shape[-1], kind)
    out = as_output_grid(grid, output_shape)
    if out == grid:
        return x
    lmax = min(grid.max_degree, out.max_degree)
    mmax = min(lmax, grid.max_order, out.max_order)
    return synthesize(analyze(x, grid, lmax, mmax), out)
