"""Training losses against closed forms."""

from __future__ import annotations

import math

import torch

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
