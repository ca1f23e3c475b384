"""Training losses against closed forms."""

from __future__ import annotations

import math

import torch

from opflow.norms import h1_norm_squared, per_variable
from opflow.train.losses import relative_h1, relative_lp


def _mode(k: int, n: int = 32) -> torch.Tensor:
    x = torch.arange(n, dtype=torch.float64) / n
    return torch.sin(2 * math.pi * k * x)[None, None, :, None].expand(1, 1, n, n).clone()


def test_relative_lp_is_per_sample_then_averaged():
    target = torch.ones(2, 1, 4, 4, dtype=torch.float64)
    pred = target.clone()
    pred[0] *= 1.5  # 50% error on sample 0, none on sample 1
    assert relative_lp(pred, target).item() == 0.25
    assert abs(relative_lp(pred, target, p=1).item() - 0.25) < 1e-12


def test_relative_h1_weights_wavenumbers_by_one_plus_k_squared():
    target, k = _mode(1), 5
    error = 0.01 * _mode(k)
    h1 = relative_h1(target + error, target).item()
    expected = 0.01 * math.sqrt((1 + (2 * math.pi * k) ** 2) / (1 + (2 * math.pi) ** 2))
    assert abs(h1 - expected) < 1e-9 * expected
    # the same error energy at a low wavenumber costs less in H1 than in L2-relative terms
    assert relative_h1(target + 0.01 * _mode(1), target).item() < h1


def _sine_on_boundary_grid(k: int, n: int) -> torch.Tensor:
    """sin(k pi x) on n points of [0, 1] including both ends: zero on the boundary."""
    x = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    return torch.sin(k * math.pi * x)[None, None, None, :].expand(1, 1, n, n).clone()


def test_non_periodic_h1_uses_finite_differences_and_converges():
    # ||u||^2 + ||u_x||^2 on the unit square for u = sin(k pi x): (1 + (k pi)^2) / 2
    exact = (1 + math.pi**2) / 2
    errors = [
        abs(h1_norm_squared(_sine_on_boundary_grid(1, n), False).item() - exact)
        for n in (33, 65, 129)
    ]
    assert errors[-1] < 0.01 * exact
    assert errors[0] > 1.8 * errors[1] > 3.2 * errors[2]  # the endpoint weights: first order
    # relative H1 of a low-frequency error is below its L2 share when the target is rougher
    target = _sine_on_boundary_grid(3, 65)
    error = 0.01 * _sine_on_boundary_grid(1, 65)
    expected = 0.01 * math.sqrt((1 + math.pi**2) / (1 + 9 * math.pi**2))
    assert (
        abs(relative_h1(target + error, target, periodic=False).item() - expected) < 0.02 * expected
    )


def test_periodic_fft_h1_would_misread_non_periodic_data():
    # u = x on [0, 1]: ||u||^2 + ||u_x||^2 = 1/3 + 1. Its periodic extension jumps at the
    # boundary, and the FFT norm of the jump grows with the grid instead of converging.
    for n in (65, 129):
        x = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
        u = x[None, None, None, :].expand(1, 1, n, n).clone()
        assert abs(h1_norm_squared(u, periodic=False).item() - 4 / 3) < 0.01
        assert h1_norm_squared(u, periodic=True).item() > n  # grows like 1.4 n


def test_per_variable_averages_each_variables_own_relative_error():

    torch.manual_seed(0)
    depth = 1e4 + torch.randn(3, 2, 8, 8)  # metres: two time steps of one variable
    vorticity = 1e-5 * torch.randn(3, 2, 8, 8)  # 1 / s
    target = torch.cat((depth, vorticity), dim=1)
    pred = target.clone()
    pred[:, 2:] = 0.0  # vorticity entirely wrong: its relative error is 1
    pooled = relative_lp(pred, target).item()
    assert pooled < 1e-8  # pooled, the depth hides the vorticity error completely
    averaged = per_variable(relative_lp, 2)(pred, target).item()
    assert abs(averaged - 0.5) < 1e-6  # (0 for depth + 1 for vorticity) / 2
    assert per_variable(relative_lp, 1) is relative_lp
