"""Evaluation that tells super-resolution from interpolation: the error split at the training
grid's band, and the baseline "predict on the training grid, then interpolate", on fields
whose content above that band is known exactly."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr
import yaml
from torch import nn

from opflow.evaluate import evaluate_run, format_table
from opflow.evaluate.metrics import band_split
from opflow.run.spec import load_trained
from opflow.spectral import fourier_resample
from opflow.surrogate import Surrogate
from opflow.train import load_config, train

HIGH = 0.5  # amplitude of the k = 12 wave, above a 16-point grid's band (|k| < 8)
# the truth's norm above the band: a unit sine has mean square 1/2, the wave HIGH² / 2
ABOVE = math.sqrt(HIGH**2 / 2 / (0.5 + HIGH**2 / 2))


def _fields(n: int, with_high: bool, samples: int = 6) -> xr.Dataset:
    """Time-constant fields: a sample-dependent low wave, plus (on fine grids) the k = 12 wave."""
    x = np.arange(n) / n
    yy, xx = np.meshgrid(x, x, indexing="ij")
    fields = []
    for s in range(samples):
        f = np.sin(2 * np.pi * (xx + (s % 3) * yy) + s)
        if with_high:
            f = f + HIGH * np.cos(2 * np.pi * 12 * xx)
        fields.append(np.stack([f, f]))  # t and t + 1: the operator is the identity
    return xr.Dataset(
        {"vorticity": (("sample", "time", "y", "x"), np.array(fields, dtype=np.float32))},
        coords={"y": x, "x": x, "time": [0.0, 1.0]},
    )


class _Operator(nn.Module):
    """The exact operator (identity), or an interpolator: identity seen through a coarse
    grid's band (what a model that learnt nothing beyond its training grid would do)."""

    def __init__(self, band: tuple[int, int] | None = None):
        super().__init__()
        self.band = band
        self.unused = nn.Parameter(torch.zeros(()))  # a device and dtype for the Surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.band is None:
            return x
        return fourier_resample(fourier_resample(x, self.band), x.shape[2:])


def test_band_split_of_a_known_error():
    torch.manual_seed(0)
    truth = torch.from_numpy(_fields(32, with_high=True).vorticity.values[:, :1]).double()
    without_high = torch.from_numpy(_fields(32, with_high=False).vorticity.values[:, :1])
    inside, above = band_split(without_high.double(), truth, (16, 16))
    np.testing.assert_allclose(inside.numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(above.numpy(), ABOVE, rtol=1e-5)
    noise = 0.01 * torch.randn_like(truth)
    inside, above = band_split(truth + noise, truth, (16, 16))
    total = (noise.flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1)).float()
    torch.testing.assert_close(inside**2 + above**2, total**2, rtol=1e-4, atol=0)  # Parseval


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("superres")
    _fields(16, with_high=False).to_netcdf(work / "f16.nc")
    _fields(32, with_high=True).to_netcdf(work / "f32.nc")
    config = {
        "data": {"path": str(work / "f16.nc"), "input_variables": ["vorticity"],
                 "windows": "first", "split": {"train": 4, "val": 1, "test": 1}},
        "model": {"name": "FNO", "args": {"n_modes": [4, 4], "hidden_channels": 4,
                                          "n_layers": 1}},
        "training": {"epochs": 1, "batch_size": 4, "output_dir": str(work / "run")},
    }  # fmt: skip
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    return train(load_config(work / "c.yaml"), progress=False), work


def _evaluate(run, work, operator: _Operator):
    trained = load_trained(run)
    surrogate = Surrogate(operator, trained.normalizer, trained.task, trained.grid)
    files = [work / "f16.nc", work / "f32.nc"]
    return evaluate_run(run, files, out_dir=work / "eval", surrogate=surrogate)


def test_exact_operator_beats_the_interpolation_baseline_above_the_band(run):
    run_dir, work = run
    results = _evaluate(run_dir, work, _Operator())
    assert results[0].super_resolution is None  # the training grid itself
    sr = results[1].super_resolution
    assert sr["training_grid"] == [16, 16]
    assert sr["truth_above_band"] == pytest.approx(ABOVE, rel=1e-4)
    assert sr["rel_l2_in_band"] < 1e-6 and sr["rel_l2_above_band"] < 1e-6
    # the baseline misses exactly the truth's content above the band, nothing inside it
    assert sr["baseline_above_band"] == pytest.approx(ABOVE, rel=1e-4)
    assert sr["baseline_in_band"] < 1e-6
    assert sr["baseline_rel_l2"] == pytest.approx(ABOVE, rel=1e-4)
    assert sr["beats_interpolation_above_band"]
    assert "better than interpolation above the band" in format_table(results)


def test_an_interpolating_model_is_reported_as_no_better(run):
    run_dir, work = run
    results = _evaluate(run_dir, work, _Operator(band=(16, 16)))
    sr = results[1].super_resolution
    assert sr["rel_l2_above_band"] == pytest.approx(ABOVE, rel=1e-4)
    assert not sr["beats_interpolation_above_band"]
    assert "NO BETTER than interpolation above the band" in format_table(results)
