"""Plots a person would rather look at than read: fields and error spectra (PNG).

Drawn on :class:`matplotlib.figure.Figure` objects, never through ``pyplot`` or a global
backend switch, so importing opflow leaves a notebook's inline plots alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

__all__ = ["plot_fields", "plot_error_spectra", "quantity_label"]


def quantity_label(attrs: dict, name: str) -> str:
    """``long name [units]`` from a variable's CF attributes (the name when there are none)."""
    label = attrs.get("long_name") or attrs.get("standard_name") or name
    units = attrs.get("units")
    return f"{label} [{units}]" if units not in (None, "") else label


def _value_scale(truths: list[np.ndarray]) -> tuple[tuple[float, float], str]:
    """Both signs: a diverging scale centred on zero; one sign (a 10 km mean depth, a
    temperature in kelvin): the truth's range, so that its structure shows."""
    lo = float(min(t.min() for t in truths))
    hi = float(max(t.max() for t in truths))
    if lo < 0 < hi or lo == hi:
        vmax = max(abs(lo), abs(hi)) or 1.0
        return (-vmax, vmax), "RdBu_r"
    return (lo, hi), "viridis"


def plot_fields(
    rows: list[tuple[str, np.ndarray, np.ndarray]],
    path: Path,
    title: str,
    quantity: str,
    extent=None,
    axis_labels: tuple[str, str] = ("x", "y"),
) -> Path:
    """Prediction | truth | error, one row per ``(row label, prediction, truth)`` (e.g. the
    test pair of median error and the worst one), 2-D fields.

    Prediction and truth share one colour scale across all rows, the errors another (so the
    worst row's error reads against the median's); colour bars are labelled with
    ``quantity`` (name and units).
    """
    (vmin, vmax), cmap = _value_scale([truth for _, _, truth in rows])
    units = quantity[quantity.rfind("[") :] if quantity.endswith("]") else ""
    error_label = f"error {units}".strip()
    emax = float(max(np.abs(p - t).max() for _, p, t in rows)) or 1.0
    fig = Figure(figsize=(12.5, 3.6 * len(rows) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(rows), 3, squeeze=False))
    origin = "lower"
    if extent is not None and extent[2] > extent[3]:  # rows run downwards (north to south)
        origin, extent = "upper", (extent[0], extent[1], extent[3], extent[2])
    for row_axes, (label, prediction, truth) in zip(axes, rows):
        panels = (
            (prediction, "prediction", cmap, (vmin, vmax), quantity),
            (truth, "truth", cmap, (vmin, vmax), quantity),
            (prediction - truth, "prediction − truth", "PuOr_r", (-emax, emax), error_label),
        )
        for ax, (field, name, colours, (low, high), bar_label) in zip(row_axes, panels):
            image = ax.imshow(
                field, origin=origin, cmap=colours, vmin=low, vmax=high, extent=extent
            )
            ax.set_title(name, fontsize=10)
            ax.set_xlabel(axis_labels[0])
            ax.set_ylabel(axis_labels[1])
            fig.colorbar(image, ax=ax, shrink=0.9, label=bar_label)
        row_axes[0].annotate(  # the row's name, left of its first panel
            label, xy=(0, 0.5), xycoords="axes fraction", xytext=(-52, 0),
            textcoords="offset points", rotation=90, ha="right", va="center", fontsize=10,
        )  # fmt: skip
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    return path


def plot_error_spectra(spectra: dict, path: Path) -> Path:
    """Energy per wavenumber shell (``spectral_error`` datasets), one colour per label: the
    truth's spectrum (thin), the prediction's (dashed) and the error's (thick, markers), so
    one sees where in wavenumber the error overtakes the signal."""
    fig = Figure(figsize=(7.2, 4.8), layout="constrained")
    ax = fig.subplots()
    markers = "osD^v<>"
    for index, (label, spectrum) in enumerate(spectra.items()):
        k = spectrum.wavenumber.values
        colour = f"C{index % 10}"
        curves = [("error_energy", "-", 2.0, markers[index % len(markers)], f"{label}: error")]
        if "truth_energy" in spectrum and ", stages" not in label:
            curves.append(("truth_energy", ":", 1.0, None, f"{label}: truth"))
        if "prediction_energy" in spectrum and ", stages" not in label:
            curves.append(("prediction_energy", "--", 1.0, None, f"{label}: prediction"))
        for name, style, width, marker, curve_label in curves:
            energy = spectrum[name].values
            keep = (k > 0) & (energy > 0)
            ax.loglog(
                k[keep], energy[keep], style, color=colour, lw=width, marker=marker,
                markersize=3.5, markevery=max(1, keep.sum() // 12), label=curve_label,
            )  # fmt: skip
    ax.set_xlabel("wavenumber |k| (cycles per domain)")
    ax.set_ylabel("energy per shell")
    ax.set_title("Error spectrum on the test split: error (thick) against the signal")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncols=2)
    fig.savefig(path, dpi=110)
    return path
