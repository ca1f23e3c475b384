"""Where in wavenumber the error of ``(B, C, ny, nx)`` fields is (relative errors:
:mod:`opflow.norms`)."""

from __future__ import annotations

import numpy as np
import torch
import xarray as xr

from opflow.spectral import even_extension
from opflow.spectral.sphere import SphereGrid, sht

__all__ = ["band_split", "sphere_band_split", "spectral_error"]


def _shell_energy(field: torch.Tensor) -> np.ndarray:
    """Mean over batch and channels of ``Σ_{round(|k|) = s} |f̂_k|²`` for ``s = 0 .. min(n)//2``.

    Forward-normalised FFT, so spectra of different resolutions are directly comparable.
    """
    spec = torch.fft.fft2(field.double(), norm="forward")
    power = (spec.abs() ** 2).mean(dim=(0, 1)).numpy()
    ny, nx = power.shape
    ky = np.fft.fftfreq(ny, 1.0 / ny)
    kx = np.fft.fftfreq(nx, 1.0 / nx)
    shell = np.rint(np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)).astype(int)
    k_max = min(ny, nx) // 2
    return np.bincount(shell.ravel(), weights=power.ravel(), minlength=k_max + 1)[: k_max + 1]


def spectral_error(pred: torch.Tensor, truth: torch.Tensor) -> xr.Dataset:
    """Radial error spectrum of 2-D fields ``(B, C, ny, nx)``: where in wavenumber the error is.

    Returns an ``xarray.Dataset`` over ``wavenumber`` (integer shells ``|k|``, in cycles per
    domain length) with ``error_energy``, ``truth_energy`` and ``prediction_energy`` (mean
    over batch and channels of the energy in the shell) and ``relative_error`` =
    sqrt(error / truth energy) per shell.
    Shells go up to ``|k| = min(ny, nx) // 2``; for fields without energy in the corners
    beyond, the energies sum to the mean squared value over the grid (Parseval), at any
    resolution.
    """
    if pred.shape != truth.shape or pred.ndim != 4:
        from opflow.errors import ShapeError

        raise ShapeError(
            f"spectral_error got shapes {tuple(pred.shape)} and {tuple(truth.shape)}",
            "two tensors of the same shape (batch, channel, ny, nx)",
            "pass 2-D fields with batch and channel axes",
        )
    error = _shell_energy(pred - truth)
    reference = _shell_energy(truth)
    predicted = _shell_energy(pred)
    relative = np.sqrt(error / np.where(reference > 0, reference, np.nan))
    k = np.arange(error.size)
    return xr.Dataset(
        {
            "error_energy": ("wavenumber", error, {"long_name": "error energy per shell"}),
            "truth_energy": ("wavenumber", reference, {"long_name": "truth energy per shell"}),
            "prediction_energy": (
                "wavenumber",
                predicted,
                {"long_name": "prediction energy per shell"},
            ),
            "relative_error": (
                "wavenumber",
                relative,
                {"long_name": "sqrt(error energy / truth energy) per shell"},
            ),
        },
        coords={"wavenumber": ("wavenumber", k, {"long_name": "shell |k| (cycles per domain)"})},
    )


def band_split(
    pred: torch.Tensor, truth: torch.Tensor, band: tuple[int, ...], periodic: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """The relative L2 error per sample ``(B,)`` split at the band a coarser grid resolves.

    ``band``: the coarse grid's sizes; its band holds the wavenumbers with
    ``-(m//2) <= k < (m+1)//2`` on every axis of size ``m`` (those a trigonometric
    interpolation from it can produce). Returns ``(in band, above band)``, each
    ``||P e|| / ||truth||`` with the band's projection ``P`` (or its complement); the two are
    orthogonal, so ``in² + above²`` is the total relative error squared (Parseval).
    Periodic fields ``(B, C, *s)`` on the unit torus; with ``periodic=False``, fields on closed
    grids (both boundaries among the points), split in their cosine series: the same split of
    their :func:`~opflow.spectral.even_extension`, whose band from ``m`` points is ``2(m - 1)``.
    """
    if not periodic:
        pred, truth = even_extension(pred), even_extension(truth)
        band = tuple(2 * (m - 1) for m in band)
    dims = tuple(range(2, truth.ndim))
    error = torch.fft.fftn((pred - truth).double(), dim=dims, norm="forward")
    reference = torch.fft.fftn(truth.double(), dim=dims, norm="forward")
    inside = torch.ones(truth.shape[2:], dtype=torch.bool)
    for axis, (n, m) in enumerate(zip(truth.shape[2:], band)):
        k = torch.fft.fftfreq(n, 1.0 / n)
        shape = [1] * len(dims)
        shape[axis] = n
        inside = inside & ((k >= -(m // 2)) & (k < (m + 1) // 2)).view(shape)
    power = error.abs().square()
    norm = reference.abs().square().flatten(1).sum(dim=1).sqrt().clamp_min(1e-30)
    low = (power * inside).flatten(1).sum(dim=1).sqrt() / norm
    high = (power * ~inside).flatten(1).sum(dim=1).sqrt() / norm
    return low.float(), high.float()


def sphere_band_split(
    pred: torch.Tensor, truth: torch.Tensor, band: tuple[int, int], kind: str = "equiangular"
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`band_split` on the sphere: fields ``(B, C, nlat, nlon)`` on a ``kind`` grid, the
    band the degrees ``l`` a ``band = (nlat, nlon)`` grid of the same kind resolves
    (``l < SphereGrid(*band, kind).max_degree``). Norms by Parseval over orthonormal harmonics,
    ``Σ_l Σ_m c_m |f_l^m|²`` (``c_0 = 1``, else 2), exact for fields band-limited to this grid's
    degrees. Returns ``(in band, above band)`` relative errors per sample ``(B,)``."""
    grid = SphereGrid(truth.shape[-2], truth.shape[-1], kind)
    degrees_in_band = SphereGrid(band[0], band[1], kind).max_degree

    def energy(field):  # (B, C, L, M)
        coeffs = sht(field.double(), grid)
        orders = torch.full((coeffs.shape[-1],), 2.0, dtype=torch.float64)
        orders[0] = 1.0
        return coeffs.abs().square() * orders

    error = energy(pred - truth)
    inside = (torch.arange(error.shape[-2]) < degrees_in_band).view(-1, 1)
    norm = energy(truth).flatten(1).sum(dim=1).sqrt().clamp_min(1e-30)
    low = (error * inside).flatten(1).sum(dim=1).sqrt() / norm
    high = (error * ~inside).flatten(1).sum(dim=1).sqrt() / norm
    return low.float(), high.float()
