"""Plots a person would rather look at than read: fields and error spectra (PNG)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

__all__ = ["plot_fields", "plot_error_spectra"]


def plot_fields(
    prediction: np.ndarray,
    truth: np.ndarray,
    path: Path,
    title: str,
    extent=None,
    axis_labels: tuple[str, str] = ("x", "y"),
) -> Path:
    """Prediction | truth | error of one 2-D field, shared colour scale for the first two.

    Fields of both signs get a diverging scale centred on zero; one-signed fields (a mean
    depth of 10 km, a temperature in kelvin) the truth's range, so their structure shows.
    """
    error = prediction - truth
    lo, hi = float(truth.min()), float(truth.max())
    if lo < 0 < hi or lo == hi:
        vmax = max(abs(lo), abs(hi)) or 1.0
        value_scale, value_cmap = (-vmax, vmax), "RdBu_r"
    else:
        value_scale, value_cmap = (lo, hi), "viridis"
    emax = float(np.abs(error).max()) or 1.0
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.8), constrained_layout=True)
    panels = (
        (prediction, "prediction", value_cmap, value_scale),
        (truth, "truth", value_cmap, value_scale),
        (error, "error", "PuOr_r", (-emax, emax)),
    )
    for ax, (field, label, cmap, (vmin, vmax)) in zip(axes, panels):
        im = ax.imshow(field, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, extent=extent)
        ax.set_title(label)
        ax.set_xlabel(axis_labels[0])
        ax.set_ylabel(axis_labels[1])
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
