"""Plots a person would rather look at than read: fields and error spectra (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_fields", "plot_error_spectra"]


def plot_fields(
    prediction: np.ndarray, truth: np.ndarray, path: Path, title: str, extent=None
) -> Path:
    """Prediction | truth | error of one 2-D field, shared colour scale for the first two."""
    error = prediction - truth
    vmax = float(np.abs(truth).max()) or 1.0
    emax = float(np.abs(error).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    panels = (
        (prediction, "prediction", "RdBu_r", vmax),
        (truth, "truth", "RdBu_r", vmax),
        (error, "error", "PuOr_r", emax),
    )
    for ax, (field, label, cmap, scale) in zip(axes, panels):
        im = ax.imshow(field, origin="lower", cmap=cmap, vmin=-scale, vmax=scale, extent=extent)
        ax.set_title(label)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        fig.colorbar(im, ax=ax, shrink=0.85)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_error_spectra(spectra: dict, path: Path) -> Path:
    """Error energy per wavenumber shell, one line per label (``spectral_error`` datasets)."""
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    for label, spectrum in spectra.items():
        k = spectrum.wavenumber.values
        energy = spectrum.error_energy.values
        keep = (k > 0) & (energy > 0)
        ax.loglog(k[keep], energy[keep], label=label)
    ax.set_xlabel("wavenumber |k|")
    ax.set_ylabel("error energy per shell")
    ax.set_title("Error spectrum (test split)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
