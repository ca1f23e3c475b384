"""Evaluation that tells super-resolution from interpolation: the error split at the training
grid's band, and the baseline "predict on the training grid, then interpolate", on fields
whose content above that band is known exactly — on periodic grids (Fourier modes) and on
closed grids with boundaries (cosine modes, as Darcy data)."""

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
from opflow.spectral import cosine_resample, fourier_resample
from opflow.spectral.sphere import sphere_resample
from opflow.surrogate import Surrogate
from opflow.train import load_config, train

HIGH = 0.5  # amplitude of the wave above the 8-point (periodic) / 9-point (closed) band
# periodic: sin(2π·8x) is above an 8-point grid's band (|k| < 4) and zero at its points, so the
# 32-point file subsampled is the 8-point one; a unit sine has mean square 1/2
ABOVE = math.sqrt(HIGH**2 / 2 / (0.5 + HIGH**2 / 2))
# closed grids: cos(12πx) − cos(4πx) is zero at the 9 points x = j/8; its cos(12πx) half is above
# their cosine band (modes < 8), its cos(4πx) half inside; each has mean square HIGH² / 2 on the
# even extension, the low field 0.5 + 0.5 + 0.25
CLOSED_EACH = math.sqrt(HIGH**2 / 2 / (1.25 + HIGH**2))


def _fields(n: int, with_high: bool, samples: int = 6, closed: bool = False) -> xr.Dataset:
    """Time-constant fields: a sample-dependent low wave, plus (on fine grids) the high one."""
    x = np.arange(n) / (n - 1 if closed else n)
    yy, xx = np.meshgrid(x, x, indexing="ij")
    fields = []
    for s in range(samples):
        if closed:
            f = (-1) ** s * np.cos(np.pi * xx) + np.cos(2 * np.pi * yy) + 0.5
            high = np.cos(12 * np.pi * xx) - np.cos(4 * np.pi * xx)
        else:
            f = np.sin(2 * np.pi * (xx + (s % 3) * yy) + s)
            high = np.sin(2 * np.pi * 8 * xx)
        if with_high:
            f = f + HIGH * high
        fields.append(np.stack([f, f]))  # t and t + 1: the operator is the identity
    return xr.Dataset(
        {"vorticity": (("sample", "time", "y", "x"), np.array(fields, dtype=np.float32))},
        coords={"y": x, "x": x, "time": [0.0, 1.0]},
    )


class _Operator(nn.Module):
    """The exact operator (identity), or an interpolator: identity seen through a coarse
    grid's band (what a model that learnt nothing beyond its training grid would do)."""

    def __init__(self, band=None, closed: bool = False, sphere: bool = False):
        super().__init__()
        self.band = band
        self.resample = cosine_resample if closed else fourier_resample
        if sphere:
            self.resample = lambda x, shape: sphere_resample(x, tuple(shape))
        self.unused = nn.Parameter(torch.zeros(()))  # a device and dtype for the Surrogate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.band is None:
            return x
        return self.resample(self.resample(x, self.band), x.shape[2:])


def test_band_split_of_a_known_error():
    torch.manual_seed(0)
    truth = torch.from_numpy(_fields(32, with_high=True).vorticity.values[:, :1]).double()
    without_high = torch.from_numpy(_fields(32, with_high=False).vorticity.values[:, :1])
    inside, above = band_split(without_high.double(), truth, (8, 8))
    np.testing.assert_allclose(inside.numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(above.numpy(), ABOVE, rtol=1e-5)
    noise = 0.01 * torch.randn_like(truth)
    inside, above = band_split(truth + noise, truth, (8, 8))
    total = (noise.flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1)).float()
    torch.testing.assert_close(inside**2 + above**2, total**2, rtol=1e-4, atol=0)  # Parseval


def test_band_split_on_closed_grids_is_the_cosine_series_split():
    truth = torch.from_numpy(_fields(33, with_high=True, closed=True).vorticity.values[:, :1])
    low = torch.from_numpy(_fields(33, with_high=False, closed=True).vorticity.values[:, :1])
    inside, above = band_split(low.double(), truth.double(), (9, 9), periodic=False)
    np.testing.assert_allclose(inside.numpy(), CLOSED_EACH, rtol=1e-5)  # the cos(4πx) half
    np.testing.assert_allclose(above.numpy(), CLOSED_EACH, rtol=1e-5)  # the cos(12πx) half
    # cosine interpolation reproduces a field of the coarse grid's cosine modes everywhere
    coarse = torch.from_numpy(_fields(9, with_high=False, closed=True).vorticity.values[:, :1])
    torch.testing.assert_close(cosine_resample(coarse.double(), (33, 33)), low.double())


def _train(work, coarse: str, periodic: bool) -> str:
    config = {
        "data": {"path": str(work / coarse), "input_variables": ["vorticity"],
                 "windows": "first", "split": {"train": 4, "val": 1, "test": 1},
                 "periodic": periodic},
        "model": {"name": "FNO", "args": {"n_modes": [2, 2], "hidden_channels": 4,
                                          "n_layers": 1}},
        "training": {"epochs": 1, "batch_size": 4, "output_dir": str(work / "run")},
    }  # fmt: skip
    (work / "c.yaml").write_text(yaml.safe_dump(config))
    return train(load_config(work / "c.yaml"), progress=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    work = tmp_path_factory.mktemp("superres")
    _fields(8, with_high=False).to_netcdf(work / "coarse.nc")
    _fields(32, with_high=True).to_netcdf(work / "fine.nc")
    return _train(work, "coarse.nc", periodic=True), work


@pytest.fixture(scope="module")
def closed_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("superres_closed")
    _fields(9, with_high=False, closed=True).to_netcdf(work / "coarse.nc")
    _fields(33, with_high=True, closed=True).to_netcdf(work / "fine.nc")
    return _train(work, "coarse.nc", periodic=False), work


def _evaluate(run, work, operator: _Operator):
    trained = load_trained(run)
    surrogate = Surrogate(operator, trained.normalizer, trained.task, trained.grid)
    files = [work / "coarse.nc", work / "fine.nc"]
    return evaluate_run(run, files, out_dir=work / "eval", surrogate=surrogate)


def test_exact_operator_beats_the_interpolation_baseline_above_the_band(run):
    run_dir, work = run
    results = _evaluate(run_dir, work, _Operator())
    assert results[0].super_resolution is None  # the training grid itself
    sr = results[1].super_resolution
    assert sr["training_grid"] == [8, 8]
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
    results = _evaluate(run_dir, work, _Operator(band=(8, 8)))
    sr = results[1].super_resolution
    assert sr["rel_l2_above_band"] == pytest.approx(ABOVE, rel=1e-4)
    assert not sr["beats_interpolation_above_band"]
    assert "NO BETTER than interpolation above the band" in format_table(results)


def test_closed_grids_are_split_in_cosine_modes_beside_the_baseline(closed_run):
    run_dir, work = closed_run
    sr = _evaluate(run_dir, work, _Operator())[1].super_resolution
    assert sr["training_grid"] == [9, 9]
    assert sr["truth_above_band"] == pytest.approx(CLOSED_EACH, rel=1e-4)
    assert sr["rel_l2_in_band"] < 1e-6 and sr["rel_l2_above_band"] < 1e-6
    # the baseline sees the fine input at the 9 coarse points, where the high term is zero:
    # it misses the whole term, half of it inside the band
    assert sr["baseline_above_band"] == pytest.approx(CLOSED_EACH, rel=1e-4)
    assert sr["baseline_in_band"] == pytest.approx(CLOSED_EACH, rel=1e-4)
    assert sr["beats_interpolation_above_band"]
    interpolating = _evaluate(run_dir, work, _Operator(band=(9, 9), closed=True))[1]
    assert interpolating.super_resolution["rel_l2_above_band"] == pytest.approx(
        CLOSED_EACH, rel=1e-4
    )
    assert not interpolating.super_resolution["beats_interpolation_above_band"]


# the sphere: 9x16 equiangular resolves degrees l < 5, 17x32 degrees l < 9; the fields are
# built by torch-harmonics (an independent inverse SHT) from orthonormal coefficients, whose
# squared norm is Σ c_m |a_lm|² (c_0 = 1, else 2): low a_10 = 1, a_21 = ±(0.5 + 0.3i) and, on
# the fine grid, HIGH at l = 7, m = 2
SPHERE_ABOVE = math.sqrt(2 * HIGH**2 / (1 + 2 * 0.34 + 2 * HIGH**2))


def _sphere_fields(nlat: int, with_high: bool, samples: int = 6) -> xr.Dataset:
    from torch_harmonics import InverseRealSHT

    from opflow.spectral.sphere import SphereGrid

    grid = SphereGrid(nlat, 2 * (nlat - 1))
    lmax = grid.max_degree
    synthesis = InverseRealSHT(nlat, grid.nlon, lmax=lmax, mmax=lmax, norm="ortho").double()
    fields = []
    for s in range(samples):
        coeffs = torch.zeros(lmax, lmax, dtype=torch.complex128)
        coeffs[1, 0] = 1.0
        coeffs[2, 1] = (-1) ** s * (0.5 + 0.3j)
        if with_high:
            coeffs[7, 2] = HIGH
        f = synthesis(coeffs).numpy()
        fields.append(np.stack([f, f]))
    return xr.Dataset(
        {"height": (("sample", "time", "lat", "lon"), np.array(fields, dtype=np.float64))},
        coords={"lat": grid.latitudes_deg.numpy(), "lon": grid.longitudes_deg.numpy(),
                "time": [0.0, 1.0]},
        attrs={"sphere_grid": "equiangular"},
    )  # fmt: skip


def test_the_sphere_is_split_in_harmonic_degrees_beside_the_baseline(tmp_path):
    _sphere_fields(9, with_high=False).to_netcdf(tmp_path / "coarse.nc")
    _sphere_fields(17, with_high=True).to_netcdf(tmp_path / "fine.nc")
    config = {
        "data": {"path": str(tmp_path / "coarse.nc"), "input_variables": ["height"],
                 "spatial_dims": ["lat", "lon"],
                 "windows": "first", "split": {"train": 4, "val": 1, "test": 1}},
        "model": {"name": "FNO", "args": {"n_modes": [2, 2], "hidden_channels": 4,
                                          "n_layers": 1}},
        "training": {"epochs": 1, "batch_size": 4, "output_dir": str(tmp_path / "run")},
    }  # fmt: skip
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    run_dir = train(load_config(tmp_path / "c.yaml"), progress=False)
    trained = load_trained(run_dir)
    files = [tmp_path / "coarse.nc", tmp_path / "fine.nc"]

    def evaluate(operator):
        surrogate = Surrogate(operator, trained.normalizer, trained.task, trained.grid)
        return evaluate_run(run_dir, files, out_dir=tmp_path / "eval", surrogate=surrogate)[1]

    sr = evaluate(_Operator()).super_resolution
    assert sr["training_grid"] == [9, 16]
    assert sr["truth_above_band"] == pytest.approx(SPHERE_ABOVE, rel=1e-4)
    assert sr["rel_l2_in_band"] < 1e-6 and sr["rel_l2_above_band"] < 1e-6
    assert sr["baseline_above_band"] == pytest.approx(SPHERE_ABOVE, rel=1e-4)
    assert sr["baseline_in_band"] < 1e-6  # the baseline's input: the fine state truncated
    assert sr["beats_interpolation_above_band"]
    # an operator that sees only the degrees the training grid holds
    truncating = _Operator(band=(9, 16), sphere=True)
    sr = evaluate(truncating).super_resolution
    assert sr["rel_l2_above_band"] == pytest.approx(SPHERE_ABOVE, rel=1e-4)
    assert not sr["beats_interpolation_above_band"]
