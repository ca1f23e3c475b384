"""The xarray data layer on real files: formats, dim names, lazy reads, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import field_dataset

from opflow.data import DataConfig, FieldData, Normalizer, open_dataset, write_dataset
from opflow.errors import DataError


def _config(path, **kw) -> DataConfig:
    base = {"path": str(path), "input_variables": ["vorticity"]}
    return DataConfig(**(base | kw))


def test_windows_pairs_and_split(nc_file):
    data = FieldData(_config(nc_file, t_in=2, t_out=1, split={"train": 4, "val": 1, "test": 1}))
    train = data.dataset("train")
    assert len(train) == 4 * 3  # 4 samples x windows t0 = 0, 1, 2
    x, y = train[4]  # sample 1, t0 = 1
    ds = xr.open_dataset(nc_file)
    np.testing.assert_array_equal(x.numpy(), ds.vorticity.values[1, 1:3])
    np.testing.assert_array_equal(y.numpy(), ds.vorticity.values[1, 3:4])
    assert list(data.split_indices("test")) == [5]


@pytest.mark.parametrize("suffix", [".nc", ".h5", ".zarr"])
def test_formats_round_trip_and_lazy_reads(tmp_path, suffix):
    ds = field_dataset()
    path = write_dataset(ds, tmp_path / f"fields{suffix}")
    back = open_dataset(path).load()
    np.testing.assert_array_equal(back.vorticity.values, ds.vorticity.values)
    eager = FieldData(_config(path))
    lazy = FieldData(_config(path, max_memory_gb=1e-9))  # forces the dask path
    assert lazy.ds.vorticity.chunks is not None
    for a, b in zip(eager.dataset("train")[3], lazy.dataset("train")[3]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("memory", [4.0, 1e-9], ids=["in memory", "lazy"])
def test_a_datasets_rows_are_the_rows_of_its_pairs(tmp_path, memory):
    """Domain parallelism: a process holding rows 3..8 of every field gets exactly those rows
    of each pair (lazily read data is read only there)."""
    path = write_dataset(field_dataset(ny=12, nx=10), tmp_path / "fields.nc")
    data = FieldData(_config(path, t_in=2, max_memory_gb=memory))
    whole = data.dataset("train")
    items = [0, 5, 7]
    x, y = whole.batch(items)
    x_rows, y_rows = whole.with_rows((3, 9)).batch(items)
    assert x_rows.shape == (3, 2, 6, 10)
    assert torch.equal(x_rows, x[:, :, 3:9]) and torch.equal(y_rows, y[:, :, 3:9])


def test_any_dim_names_and_descending_coordinates(tmp_path):
    ds = field_dataset(dims=("member", "step", "lat", "lon"))
    ds = ds.isel(lat=slice(None, None, -1))  # latitude stored descending, as in ERA5
    path = tmp_path / "era.nc"
    ds.to_netcdf(path)
    cfg = _config(path, sample_dim="member", time_dim="step", spatial_dims=["lat", "lon"])
    ascending = ds.sortby("lat").vorticity.values[0, 0]
    for memory in (4.0, 1e-9):  # in memory, and read lazily through dask
        data = FieldData(dataclasses.replace(cfg, max_memory_gb=memory))
        assert data.grid.dims == ["lat", "lon"] and data.grid.spacing[0] > 0
        x, _ = data.dataset("train")[0]
        np.testing.assert_array_equal(x[0].numpy(), ascending)


def test_missing_variable_is_named(nc_file):
    with pytest.raises(DataError, match="'pressure' is missing.*'vorticity'"):
        FieldData(_config(nc_file, input_variables=["pressure"]))


def test_wrong_dims_are_named(nc_file):
    with pytest.raises(DataError, match=r"missing \['lat'\].*data.spatial_dims"):
        FieldData(_config(nc_file, spatial_dims=["lat", "x"]))


def test_nan_and_inf_are_reported_with_location(tmp_path):
    ds = field_dataset()
    ds.vorticity.values[2, 1, 3, 4] = np.nan
    ds.vorticity.values[4, 0, 0, 0] = np.inf
    path = tmp_path / "bad.nc"
    ds.to_netcdf(path)
    with pytest.raises(DataError, match=r"2 NaN/Inf values \(first at \{'sample': 2"):
        FieldData(_config(path))


def test_non_uniform_axis_is_rejected(tmp_path):
    ds = field_dataset()
    x = ds.x.values.copy()
    x[5] += 0.01
    ds = ds.assign_coords(x=("x", x))
    path = tmp_path / "stretched.nc"
    ds.to_netcdf(path)
    with pytest.raises(DataError, match="coordinate 'x' is not uniformly spaced.*index 4"):
        FieldData(_config(path))


def test_too_coarse_for_the_modes_names_the_dim(nc_file):
    data = FieldData(_config(nc_file))
    data.check_resolution((16, 16))
    with pytest.raises(DataError, match="dim 'x' has 16 points but the model keeps n_modes"):
        data.check_resolution((16, 20))


def test_normalizer_is_fitted_on_the_training_split_only(tmp_path):
    ds = field_dataset(n_samples=10)
    ds["vorticity"][8:] += 100.0  # test samples far off: must not leak into the statistics
    path = tmp_path / "shifted.nc"
    ds.to_netcdf(path)
    data = FieldData(_config(path))
    norm = Normalizer.fit(data, "train", ["vorticity"])
    expected = ds.vorticity.values[:8]
    assert norm.mean["vorticity"] == pytest.approx(expected.mean(), rel=1e-5)
    assert norm.std["vorticity"] == pytest.approx(expected.std(), rel=1e-4)
    x = torch.randn(2, 3, 4, 4)
    back = norm.decode(norm.encode(x, ["vorticity"], 3), ["vorticity"], 3)
    assert torch.allclose(back, x, atol=1e-5)


def _two_variables(tmp_path, lazy: bool = False) -> tuple[FieldData, xr.Dataset]:
    ds = field_dataset(n_samples=8, n_times=6)
    # a second variable on another scale, so that a mixed-up order cannot go unnoticed
    ds["tracer"] = 100.0 + 10.0 * ds.vorticity.roll(x=3) + 0.5 * ds.time
    path = tmp_path / "two.nc"
    ds.to_netcdf(path)
    config = _config(
        path,
        input_variables=["vorticity", "tracer"],
        output_variables=["tracer", "vorticity"],  # another order than the inputs
        t_in=2,
        t_out=3,
        max_memory_gb=1e-9 if lazy else 4.0,
    )
    return FieldData(config), ds


@pytest.mark.parametrize("lazy", [False, True], ids=["memory", "lazy"])
def test_several_variables_and_steps_are_stacked_variable_major(tmp_path, lazy):
    data, ds = _two_variables(tmp_path, lazy)
    pairs = data.dataset("train")
    assert len(pairs) == 6 * 2  # 6 samples x windows t0 = 0, 1
    x, y = pairs.batch([3, 0])  # (sample 1, t0 = 1) and (sample 0, t0 = 0)
    w, c = ds.vorticity.values, ds.tracer.values
    np.testing.assert_array_equal(x[0].numpy(), np.concatenate([w[1, 1:3], c[1, 1:3]]))
    np.testing.assert_array_equal(y[0].numpy(), np.concatenate([c[1, 3:6], w[1, 3:6]]))
    np.testing.assert_array_equal(x[1].numpy(), np.concatenate([w[0, 0:2], c[0, 0:2]]))


def test_normalizer_channels_follow_the_variables(tmp_path):
    data, ds = _two_variables(tmp_path)
    norm = Normalizer.fit(data, "train", ["vorticity", "tracer"])
    for var in ("vorticity", "tracer"):
        values = ds[var].values[:6]
        assert norm.mean[var] == pytest.approx(values.mean(), rel=1e-5)
        assert norm.std[var] == pytest.approx(values.std(), rel=1e-4)
    _, y = data.dataset("train").batch(range(12))
    z = norm.encode(y, ["tracer", "vorticity"], 3)
    # each channel by its own variable's statistics: tracer's 3 steps, then vorticity's
    for channel, var in enumerate(["tracer"] * 3 + ["vorticity"] * 3):
        expected = (y[:, channel] - norm.mean[var]) / norm.std[var]
        torch.testing.assert_close(z[:, channel], expected)
    torch.testing.assert_close(norm.decode(z, ["tracer", "vorticity"], 3), y)


def test_input_file_is_never_modified(nc_file):
    before = nc_file.read_bytes()
    data = FieldData(_config(nc_file))
    data.dataset("train")[0]
    assert nc_file.read_bytes() == before
