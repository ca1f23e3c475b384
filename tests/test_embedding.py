"""The xarray round trip of the embedding API: what comes out is labelled like what went in."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from conftest import field_dataset

import opflow
from opflow.train import load_config, train

DT = 0.5  # the training data's time step


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A t_in = 1 FNO trained briefly on fields recorded every 0.5 time units."""
    work = tmp_path_factory.mktemp("embedding")
    ds = field_dataset(n_samples=12, n_times=4, seed=1)
    ds = ds.assign_coords(time=("time", DT * np.arange(4), {"units": "s"}))
    ds.to_netcdf(work / "fields.nc")
    config = {
        "data": {"path": str(work / "fields.nc"), "input_variables": ["vorticity"],
                 "split": {"train": 8, "val": 2, "test": 2}},
        "model": {"name": "FNO", "args": {"n_modes": [6, 6], "hidden_channels": 8,
                                          "n_layers": 2}},
        "training": {"epochs": 2, "batch_size": 4, "output_dir": str(work / "run")},
    }  # fmt: skip
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    run = train(load_config(work / "config.yaml"), progress=False)
    return opflow.load(run), ds


def test_descending_coordinates_come_back_descending_and_correctly_labelled(trained):
    surrogate, ds = trained
    state = ds[["vorticity"]].isel(sample=[0, 1], time=[2])
    ascending = surrogate(state)
    for flipped in (
        {"y": slice(None, None, -1)},
        {"x": slice(None, None, -1), "y": slice(None, None, -1)},
    ):
        out = surrogate(state.isel(flipped))
        for dim in flipped:
            np.testing.assert_array_equal(out[dim].values, state[dim].values[::-1])
        by_label = out.vorticity.sortby(["y", "x"]).values
        np.testing.assert_allclose(by_label, ascending.vorticity.values, rtol=0, atol=1e-6)


def test_time_labels_continue_the_inputs_time_axis(trained):
    surrogate, ds = trained
    state = ds[["vorticity"]].isel(sample=[0], time=[2])  # one label: the data's step continues it
    out = surrogate(state)
    np.testing.assert_allclose(out.time.values, [2 * DT + DT])
    assert out.time.attrs["units"] == "s"
    np.testing.assert_allclose(surrogate.rollout(state, 3).time.values, DT * np.array([3, 4, 5]))
    # datetimes continue by the state's own spacing
    six_hourly = np.array(["2020-01-01T00", "2020-01-01T06"], dtype="datetime64[ns]")
    dated = ds[["vorticity"]].isel(sample=[0], time=[1, 2]).assign_coords(time=six_hourly)
    expected = np.array(["2020-01-01T12", "2020-01-01T18"], dtype="datetime64[ns]")
    np.testing.assert_array_equal(surrogate.rollout(dated, 2).time.values, expected)


def test_attributes_coordinates_and_dtype_round_trip(trained):
    surrogate, ds = trained
    state = ds[["vorticity"]].isel(sample=[3, 5], time=[1, 2])
    state = state.assign_coords(y_km=("y", 1000.0 * state.y.values, {"units": "km"}))
    state.attrs = {"title": "my simulation", "institution": "here"}
    out = surrogate(state)
    assert out.attrs == state.attrs
    assert out.vorticity.attrs == state.vorticity.attrs
    assert out.y.attrs == {"units": "1"} and out.x.attrs == {"units": "1"}
    np.testing.assert_array_equal(out.y_km.values, state.y_km.values)
    assert out.y_km.attrs == {"units": "km"}
    np.testing.assert_array_equal(out.sample.values, [3, 5])
    assert out.vorticity.dtype == np.float32
    as64 = surrogate(state.astype("float64"))
    assert as64.vorticity.dtype == np.float64
    np.testing.assert_allclose(as64.vorticity.values, out.vorticity.values, rtol=0, atol=1e-6)
