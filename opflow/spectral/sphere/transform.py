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

Internal spectral layout (``spherical spectrum``): real ``(M, L, B, 2, C)`` — orders, degrees,
batch, real/imaginary part, channel — so the per-(l, m) complex mixing of
:func:`opflow.spectral.conv.mix_modes` applies to its ``(M*L, B, 2C)`` view unchanged.
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


@constant_cache(maxsize=128)
def legendre_analysis(
    grid: SphereGrid, lmax: int, mmax: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Quadrature-weighted analysis matrix ``2π w_k P_l^m(cos θ_k)``, ``(mmax, lmax, nlat)``."""
    mat = _legendre(grid, lmax, mmax) * (2 * torch.pi * grid.quadrature_weights)
    return mat.to(dtype=dtype, device=device).contiguous()


@constant_cache(maxsize=128)
def legendre_synthesis(
    grid: SphereGrid, lmax: int, mmax: int, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Synthesis matrix ``P_l^m(cos θ_k)`` on ``grid``'s colatitudes, ``(mmax, nlat, lmax)``."""
    mat = _legendre(grid, lmax, mmax).transpose(1, 2)
    return mat.to(dtype=dtype, device=device).contiguous()


@constant_cache(maxsize=128)
def longitude_analysis(nlon: int, mmax: int, dtype: torch.dtype, device: torch.device):
    """Real truncated DFT ``[Re E; Im E]`` ``(2*mmax, nlon)``: orders ``0..mmax-1``."""
    mat = fourier.analysis_complex(nlon, 2 * mmax - 1, half=True)
    return torch.cat((mat.real, mat.imag)).to(dtype=dtype, device=device).contiguous()


@constant_cache(maxsize=128)
def longitude_synthesis(nlon: int, mmax: int, dtype: torch.dtype, device: torch.device):
    """Real synthesis ``[Re G, -Im G]`` ``(nlon, 2*mmax)``, ``y = Re(G z)`` for ``z = zr + i zi``.

    Orders above the output grid's Nyquist have zero columns (dropped, never aliased).
    """
    mat = fourier.synthesis_complex(nlon, 2 * mmax - 1, half=True)
    return torch.cat((mat.real, -mat.imag), dim=1).to(dtype=dtype, device=device).contiguous()


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
    """Real field ``(B, C, nlat, nlon)`` -> spherical spectrum ``(mmax, lmax, B, 2, C)``."""
    _check_field(x, grid)
    check_band_limit(grid, lmax, mmax)
    batch, channels = x.shape[:2]
    if select_sphere_backend(backend, grid, mmax) == "fft":
        coeffs = torch.fft.rfft(x, dim=-1, norm="forward")[..., :mmax]
        parts = torch.view_as_real(coeffs)  # (B, C, nlat, mmax, 2)
        parts = parts.permute(3, 2, 0, 4, 1)  # (mmax, nlat, B, 2, C)
    else:
        mat = longitude_analysis(grid.nlon, mmax, x.dtype, x.device)
        parts = (x @ mat.T).view(batch, channels, grid.nlat, 2, mmax)
        parts = parts.permute(4, 2, 0, 3, 1)  # (mmax, nlat, B, 2, C)
    parts = parts.reshape(mmax, grid.nlat, -1)
    spec = torch.bmm(legendre_analysis(grid, lmax, mmax, x.dtype, x.device), parts)
    return spec.view(mmax, lmax, batch, 2, channels)


def synthesize(spec: torch.Tensor, grid: SphereGrid, backend: str = "auto") -> torch.Tensor:
    """Spherical spectrum ``(mmax, lmax, B, 2, C)`` -> real field ``(B, C, nlat, nlon)`` on
    ``grid`` (any kind and size; orders above its Nyquist are dropped)."""
    mmax, lmax, batch, _, channels = spec.shape
    legendre = legendre_synthesis(grid, lmax, mmax, spec.dtype, spec.device)
    parts = torch.bmm(legendre, spec.reshape(mmax, lmax, -1))  # (mmax, nlat, B*2*C)
    parts = parts.view(mmax, grid.nlat, batch, 2, channels)
    if select_sphere_backend(backend, grid, mmax) == "fft":
        kept = min(mmax, grid.max_order)
        coeffs = torch.complex(parts[:kept, :, :, 0], parts[:kept, :, :, 1])
        coeffs = coeffs.permute(2, 3, 1, 0)  # (B, C, nlat, kept)
        # the DC and Nyquist orders are real on a real field; irfft assumes so
        if grid.nlon % 2 == 0 and kept == grid.max_order:
            real_orders = [0, kept - 1]
        else:
            real_orders = [0]
        mask = torch.ones(kept, dtype=spec.dtype, device=spec.device)
        mask[real_orders] = 0
        coeffs = torch.complex(coeffs.real, coeffs.imag * mask)
        return torch.fft.irfft(coeffs, n=grid.nlon, dim=-1, norm="forward")
    mat = longitude_synthesis(grid.nlon, mmax, spec.dtype, spec.device)
    parts = parts.permute(2, 4, 1, 3, 0).reshape(batch, channels, grid.nlat, 2 * mmax)
    return parts @ mat.T


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
    coeffs = torch.complex(spec[:, :, 0, 0], spec[:, :, 0, 1])  # (mmax, lmax, N)
    return coeffs.permute(2, 1, 0).reshape(*lead, lmax, mmax)


def isht(coeffs: torch.Tensor, grid: SphereGrid, backend: str = "auto") -> torch.Tensor:
    """Inverse SHT of complex ``(..., lmax, mmax)`` -> real ``(..., nlat, nlon)`` on ``grid``."""
    if not coeffs.is_complex() or coeffs.ndim < 2:
        raise ShapeError(
            f"isht got a {coeffs.dtype} tensor of shape {tuple(coeffs.shape)}",
            "complex coefficients (..., lmax, mmax)",
            "pass the output of sht()",
        )
    lead, (lmax, mmax) = coeffs.shape[:-2], coeffs.shape[-2:]
    flat = coeffs.reshape(-1, lmax, mmax).permute(2, 1, 0)  # (mmax, lmax, N)
    spec = torch.stack((flat.real, flat.imag), dim=2).unsqueeze(2)  # (mmax, lmax, 1, 2, N)
    field = synthesize(spec.contiguous(), grid, backend)  # (1, N, nlat, nlon)
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
