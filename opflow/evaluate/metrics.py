"""Error metrics on ``(B, C, *spatial)`` fields."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["relative_l2_per_sample", "error_spectrum"]


def relative_l2_per_sample(pred: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """``||pred - truth||_2 / ||truth||_2`` per sample over all channels and points, ``(B,)``."""
    diff = (pred - truth).flatten(1).norm(dim=1)
    return diff / truth.flatten(1).norm(dim=1).clamp_min(1e-12)


def error_spectrum(error: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Error energy per integer wavenumber shell ``|k|`` of a 2-D periodic field.

    ``error``: ``(B, C, ny, nx)``. Returns ``(k, energy)`` with ``energy[k]`` the mean over
    batch and channels of ``sum_{round(|k|) = k} |e_hat_k|^2`` (forward-normalised FFT, so the
    spectra of different resolutions are directly comparable).
    """
    spec = torch.fft.fft2(error.double(), norm="forward")
    power = (spec.abs() ** 2).mean(dim=(0, 1)).numpy()
    ny, nx = power.shape
    ky = np.fft.fftfreq(ny, 1.0 / ny)
    kx = np.fft.fftfreq(nx, 1.0 / nx)
    shell = np.rint(np.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)).astype(int)
    k_max = min(ny, nx) // 2
    energy = np.bincount(shell.ravel(), weights=power.ravel())[: k_max + 1]
    return np.arange(k_max + 1), energy
