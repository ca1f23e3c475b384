r"""2-D incompressible Navier–Stokes in vorticity form on the periodic unit torus.

.. math::

    \partial_t w + u \cdot \nabla w = \nu \Delta w + f, \qquad
    u = (\partial_y \psi, -\partial_x \psi), \qquad -\Delta \psi = w, \qquad (x, y) \in [0, 1)^2

Pseudo-spectral in space with the 2/3 dealiasing rule on the nonlinear term (as the original
FNO data generator, Li et al. 2021, ``ns_2d.py``), Crank–Nicolson for the viscous term and
Heun's predictor–corrector for advection and forcing, ``N(w) = f - u·∇w``:

.. math::

    \hat w^{*} = \frac{(1 - \tfrac12 \Delta t \nu |k|^2)\, \hat w^n + \Delta t\, \hat N(w^n)}
        {1 + \tfrac12 \Delta t \nu |k|^2}, \qquad
    \hat w^{n+1} = \frac{(1 - \tfrac12 \Delta t \nu |k|^2)\, \hat w^n
        + \tfrac12 \Delta t\, (\hat N(w^n) + \hat N(w^{*}))}{1 + \tfrac12 \Delta t \nu |k|^2}

``ns_2d.py`` takes an explicit Euler step for ``N`` with a tiny fixed step (1e-4); at the CFL
step used here Euler's amplification of advected modes is only damped by viscosity, and the
flow blows up at ``ν = 1e-4`` within one time unit, which Heun's second-order step does not.

Batched over samples in torch, any even resolution, any viscosity. Without a given ``dt`` each
recording interval is split into equal steps no longer than ``cfl * h / max|u|`` (advective
CFL bound; the viscous term is implicit and needs none).

Fields are ``(batch, y, x)`` arrays: axis ``-2`` is ``y``, axis ``-1`` is ``x``; grid point
``j`` sits at ``j / n``. All quantities are nondimensional.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from opflow.errors import ConfigError

__all__ = [
    "SOLVER_VERSION",
    "default_forcing",
    "gaussian_random_field",
    "grid",
    "solve",
    "taylor_green_vorticity",
]

SOLVER_VERSION = "opflow.navier_stokes/2 (Heun advection, Crank–Nicolson viscosity)"


def grid(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """The ``n`` grid coordinates ``j / n`` of one axis of the unit torus."""
    return torch.arange(n, dtype=dtype) / n


def default_forcing(n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """FNO's forcing ``0.1 (sin 2 pi (x + y) + cos 2 pi (x + y))`` on an ``n x n`` grid."""
    y, x = torch.meshgrid(grid(n, dtype), grid(n, dtype), indexing="ij")
    phase = 2 * math.pi * (x + y)
    return 0.1 * (torch.sin(phase) + torch.cos(phase))


def gaussian_random_field(
    n_samples: int,
    n: int,
    alpha: float = 2.5,
    tau: float = 7.0,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    r"""Samples of a periodic Gaussian random field with covariance ``(-\Delta + tau^2)^-alpha``.

    As in FNO's generator: Fourier coefficients
    ``sqrt(2) sigma (4 pi^2 |k|^2 + tau^2)^(-alpha/2)`` times complex white noise,
    ``sigma = tau^(alpha - 1)``, zero mean. Returns ``(n_samples, n, n)``.
    """
    sigma = tau ** (0.5 * (2 * alpha - 2))
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    ky, kx = torch.meshgrid(k, k, indexing="ij")
    sqrt_eig = math.sqrt(2.0) * sigma * (4 * math.pi**2 * (kx**2 + ky**2) + tau**2) ** (-alpha / 2)
    sqrt_eig[0, 0] = 0.0
    noise = torch.randn(n_samples, n, n, 2, generator=generator, dtype=torch.float64)
    coeff = torch.view_as_complex(noise) * sqrt_eig * n * n
    return torch.fft.ifft2(coeff).real.to(dtype)


def taylor_green_vorticity(
    n: int, t: float, viscosity: float, mode: int = 1, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    r"""Exact decaying Taylor–Green vortex.

    ``w = 2 (2 pi m) cos(2 pi m x) cos(2 pi m y) exp(-2 nu (2 pi m)^2 t)``.

    Its stream function is an eigenfunction of the Laplacian, so ``u . grad w = 0`` and only
    viscosity acts. Returns ``(1, n, n)``.
    """
    k = 2 * math.pi * mode
    y, x = torch.meshgrid(grid(n, dtype), grid(n, dtype), indexing="ij")
    w = 2 * k * torch.cos(k * x) * torch.cos(k * y) * math.exp(-2 * viscosity * k**2 * t)
    return w[None]


class _Spectral:
    """Wavenumbers, Laplacian and dealiasing mask of an ``n x n`` rfft2 grid."""

    def __init__(self, n: int, dtype: torch.dtype, device: torch.device):
        k_int = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)
        kx_int = torch.arange(n // 2 + 1, dtype=dtype, device=device)
        ky_int, kx_int = torch.meshgrid(k_int, kx_int, indexing="ij")
        self.kx = 2 * math.pi * kx_int
        self.ky = 2 * math.pi * ky_int
        self.k2 = self.kx**2 + self.ky**2
        self.k2_safe = self.k2.clone()
        self.k2_safe[0, 0] = 1.0
        cutoff = 2.0 / 3.0 * (n // 2)
        self.dealias = ((ky_int.abs() <= cutoff) & (kx_int.abs() <= cutoff)).to(dtype)
        self.h = 1.0 / n

    def velocity(self, w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        psi_hat = w_hat / self.k2_safe
        psi_hat[..., 0, 0] = 0.0
        u = torch.fft.irfft2(1j * self.ky * psi_hat)
        v = torch.fft.irfft2(-1j * self.kx * psi_hat)
        return u, v

    def advection_hat(self, w_hat: torch.Tensor) -> torch.Tensor:
        u, v = self.velocity(w_hat)
        w_x = torch.fft.irfft2(1j * self.kx * w_hat)
        w_y = torch.fft.irfft2(1j * self.ky * w_hat)
        return torch.fft.rfft2(u * w_x + v * w_y) * self.dealias


def solve(
    w0: torch.Tensor,
    viscosity: float,
    record_interval: float,
    n_records: int,
    forcing: torch.Tensor | None = None,
    dt: float | None = None,
    cfl: float = 0.5,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Integrate from ``w0`` ``(batch, n, n)`` and return the vorticity at ``n_records`` times.

    Parameters
    ----------
    w0 : tensor ``(batch, n, n)``
        Initial vorticity; its dtype and device are used throughout.
    viscosity : float
        Kinematic viscosity ``nu`` (> 0).
    record_interval : float
        Time between recorded states; states are returned at ``record_interval * (1..n_records)``.
    n_records : int
        Number of recorded states.
    forcing : tensor ``(n, n)``, optional
        Time-independent forcing ``f`` (none when omitted).
    dt : float, optional
        Fixed time step; must divide ``record_interval``. Chosen from the CFL bound per recording
        interval when omitted.
    cfl : float
        Courant number for the automatic time step.
    progress : callable, optional
        Called with the number of recording intervals completed, after each one.

    Returns
    -------
    tensor ``(batch, n_records, n, n)``
    """
    if w0.ndim != 3 or w0.shape[-1] != w0.shape[-2] or w0.shape[-1] % 2:
        raise ConfigError(
            f"Navier–Stokes initial vorticity has shape {tuple(w0.shape)}",
            "(batch, n, n) with n even",
            "pass a batch of square fields with an even number of grid points",
        )
    if viscosity <= 0 or record_interval <= 0 or n_records < 1:
        raise ConfigError(
            f"viscosity={viscosity}, record_interval={record_interval}, n_records={n_records}",
            "positive viscosity and interval, at least one record",
            "fix the solver settings",
        )
    n = w0.shape[-1]
    ops = _Spectral(n, w0.dtype, w0.device)
    w_hat = torch.fft.rfft2(w0)
    f_hat = torch.fft.rfft2(forcing.to(w0)) if forcing is not None else torch.zeros_like(w_hat)
    records = w0.new_empty(w0.shape[0], n_records, n, n)
    for record in range(n_records):
        if dt is None:
            u, v = ops.velocity(w_hat)
            speed = max(u.abs().max().item(), v.abs().max().item(), 1e-12)
            if not math.isfinite(speed):
                raise ConfigError(
                    f"the flow blew up before record {record + 1} (viscosity {viscosity}, "
                    f"cfl {cfl}, {n}x{n})",
                    "a Courant number the explicit advection step is stable at",
                    "lower cfl (e.g. 0.25 at viscosity 1e-4) or raise the viscosity",
                )
            n_steps = max(1, math.ceil(record_interval * speed / (cfl * ops.h)))
        else:
            n_steps = round(record_interval / dt)
            if n_steps < 1 or abs(n_steps * dt - record_interval) > 1e-9 * record_interval:
                raise ConfigError(
                    f"dt={dt} does not divide record_interval={record_interval}",
                    "record_interval / dt a whole number",
                    "choose dt = record_interval / N, or leave dt unset for the CFL rule",
                )
        step = record_interval / n_steps
        implicit = 1.0 + 0.5 * step * viscosity * ops.k2
        explicit = 1.0 - 0.5 * step * viscosity * ops.k2
        for _ in range(n_steps):
            tendency = f_hat - ops.advection_hat(w_hat)
            predicted = (explicit * w_hat + step * tendency) / implicit
            tendency = 0.5 * (tendency + f_hat - ops.advection_hat(predicted))
            w_hat = (explicit * w_hat + step * tendency) / implicit
        records[:, record] = torch.fft.irfft2(w_hat, s=(n, n))
        # the step is fixed per record from the speed at its start: a flow that speeds up
        # within the record can blow up there, and the last record has no next start to see it
        if not torch.isfinite(records[:, record]).all():
            raise ConfigError(
                f"the flow blew up during record {record + 1} (viscosity {viscosity}, "
                f"cfl {cfl}, {n}x{n})",
                "a Courant number the explicit advection step is stable at",
                "lower cfl (e.g. 0.25 at viscosity 1e-4, 0.1 at 1e-5 on fine grids) or raise "
                "the viscosity",
            )
        if progress is not None:
            progress(record + 1)
    return records
