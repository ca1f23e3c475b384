"""The radial error spectrum against fields with known spectra."""

from __future__ import annotations

import math

import pytest
import torch

from opflow.errors import ShapeError
from opflow.evaluate import spectral_error


def _wave(n: int, kx: int, ky: int = 0) -> torch.Tensor:
    x = torch.arange(n, dtype=torch.float64) / n
    return torch.sin(2 * math.pi * (kx * x[None, :] + ky * x[:, None]))[None, None]


@pytest.mark.parametrize("n", [32, 64])
def test_errors_land_in_their_shell_at_any_resolution(n):
    truth = _wave(n, 3).expand(2, 1, n, n)
    pred = truth + 0.1 * _wave(n, 6, 8)  # an error at |k| = 10
    ds = spectral_error(pred, truth)
    assert ds.sizes["wavenumber"] == n // 2 + 1
    assert ds.error_energy.sel(wavenumber=10).item() == pytest.approx(0.005, rel=1e-9)
    assert ds.error_energy.drop_sel(wavenumber=10).max().item() < 1e-20
    assert ds.truth_energy.sel(wavenumber=3).item() == pytest.approx(0.5, rel=1e-9)
    # Parseval: shells sum to the mean squared error over the grid
    assert ds.error_energy.sum().item() == pytest.approx((pred - truth).square().mean().item())
    assert ds.relative_error.sel(wavenumber=3).item() == pytest.approx(0.0, abs=1e-9)
    # the prediction's own spectrum, drawn beside the error's: the truth's shell plus the error's
    assert ds.prediction_energy.sel(wavenumber=3).item() == pytest.approx(0.5, rel=1e-9)
    assert ds.prediction_energy.sel(wavenumber=10).item() == pytest.approx(0.005, rel=1e-9)


def test_shape_mismatch_is_a_clear_error():
    with pytest.raises(ShapeError, match="same shape"):
        spectral_error(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 9))
