"""Shallow-water data on the sphere (torch-harmonics' solver, wrapped) and spherical models
trained on it from their configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from opflow.data.recipes import generate, load_recipe
from opflow.errors import ConfigError
from opflow.evaluate import evaluate_run
from opflow.evaluate.weather import lat_weighted_rmse
from opflow.train import load_config, train

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def swe_data(tmp_path_factory):
    """48 trajectories of 3 hours at 33x64 and 65x128, made by two worker processes."""
    recipe = load_recipe(ROOT / "datasets" / "shallow_water_quickstart.yaml")
    recipe = dataclasses.replace(recipe, n_samples=48, n_records=3, workers=2)
    out = tmp_path_factory.mktemp("swe")
    return recipe, generate(recipe, out / "swe.nc", progress=False)


def test_swe_data_is_cf_xarray_at_two_resolutions_from_one_solve(swe_data):
    _, paths = swe_data
    assert sorted(paths) == [(33, 64), (65, 128)]
    coarse, fine = (xr.open_dataset(paths[k]) for k in sorted(paths))
    for ds in (coarse, fine):
        assert set(ds.data_vars) == {"geopotential_height", "vorticity", "divergence"}
        assert ds["vorticity"].dims == ("sample", "time", "lat", "lon")
        assert ds["geopotential_height"].attrs["units"] == "m"
        assert ds["vorticity"].attrs["units"] == "s-1"
        assert ds["lat"].attrs["units"] == "degrees_north" and ds["lat"].values[0] == 90.0
        assert ds.attrs["sphere_grid"] == "equiangular"
    # nested equiangular grids: the coarse file is the same solution at every other point
    for name in coarse.data_vars:
        a = coarse[name].values
        b = fine[name].values[..., ::2, ::2]
        assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max(), name
    # a mean depth of 10 km, and flows at Mach 0.2: |vorticity| of order u / R ~ 1e-5 1/s
    assert abs(float(fine["geopotential_height"].mean()) - 1.0e4) < 50
    assert 1e-7 < float(fine["vorticity"].std()) < 1e-4


def test_swe_data_keep_the_global_laws_of_a_flow_on_the_sphere(swe_data):
    """Independent of the solver: on a closed sphere the integrals of relative vorticity and
    divergence vanish (Stokes, Gauss) and the total mass (mean height) is conserved. Integrals
    by the cos(latitude)-weighted trapezoid rule, written here (error ~1e-4 at 65x128)."""
    _, paths = swe_data
    with xr.open_dataset(paths[(65, 128)]) as ds:
        ds = ds.astype("float64")
        weights = np.cos(np.deg2rad(ds["lat"]))
        mean = ds.weighted(weights).mean(("lat", "lon"))
        for name in ("vorticity", "divergence"):
            rms = np.sqrt((ds[name] ** 2).weighted(weights).mean(("lat", "lon")))
            # measured <= 2e-4; torch-harmonics' random states carried a degree-0 part: 0.10
            assert float((abs(mean[name]) / rms).max()) < 2e-3, name
        height = mean["geopotential_height"]
        drift = abs(height - height.isel(time=0)) / height.isel(time=0)
        assert float(drift.max()) < 1e-5  # measured 1.3e-6 (the quadrature's error)


def test_swe_samples_do_not_depend_on_the_worker_count(swe_data, tmp_path):
    recipe, paths = swe_data
    serial = dataclasses.replace(recipe, n_samples=3, workers=1)
    again = generate(serial, tmp_path / "serial.nc", progress=False)
    with xr.open_dataset(paths[(65, 128)]) as a, xr.open_dataset(again[(65, 128)]) as b:
        np.testing.assert_array_equal(
            a["vorticity"].isel(sample=slice(0, 3)).values, b["vorticity"].values
        )


def test_swe_recipe_errors_are_clear(tmp_path):
    path = tmp_path / "bad.yaml"
    base = "name: bad\nequation: shallow_water\nn_samples: 2\n"
    path.write_text(base + "resolutions: [33, 64]\n")
    with pytest.raises(ConfigError, match=r"resolutions\[0\] = 33"):
        load_recipe(path)
    path.write_text(base + "resolutions: [[33, 64]]\ngrid: healpix\n")
    with pytest.raises(ConfigError, match="grid='healpix'"):
        load_recipe(path)
    path.write_text(base + "resolutions: [[32, 64]]\ngrid: equiangular-no-poles\n")
    with pytest.raises(ConfigError, match="no 'equiangular-no-poles' grid"):
        load_recipe(path)


def _trivial_baselines(path, train: slice, test: slice) -> dict[str, tuple[float, float]]:
    """Per variable: the latitude-weighted RMSE of persistence (hour t as the forecast of hour
    t + 1) and of the mean predictor (the training trajectories' mean field), on the test pairs."""
    with xr.open_dataset(path) as ds:
        lat = ds["lat"].values

        def rmse(forecast, truth):
            def as_pairs(a):
                return xr.DataArray(
                    a.reshape(-1, *a.shape[-2:]), dims=("pair", "lat", "lon"), coords={"lat": lat}
                )

            return float(lat_weighted_rmse(as_pairs(forecast), as_pairs(truth)).mean())

        baselines = {}
        for name in ds.data_vars:
            values = ds[name].values.astype("float64")
            truth = values[test, 1:]
            mean_field = np.broadcast_to(values[train].mean(axis=(0, 1)), truth.shape)
            baselines[name] = (rmse(values[test, :-1], truth), rmse(mean_field, truth))
    return baselines


@pytest.mark.parametrize("config_name", ["swe_sfno.yaml", "swe_spherical_cnn.yaml"])
def test_spherical_models_train_from_config_and_evaluate_at_the_finer_grid(
    swe_data, tmp_path, config_name
):
    _, paths = swe_data
    config = load_config(
        ROOT / "configs" / config_name,
        [
            f"data.path={paths[(33, 64)]}",
            "data.split={train: 36, val: 6, test: 6}",
            "model.args.hidden_channels=16",
            "training.epochs=40",
            "training.batch_size=8",
            f"training.output_dir={tmp_path / 'run'}",
        ],
    )
    run_dir = train(config, progress=False)
    log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    first, last = log[0], log[-1]
    assert last["train_loss"] < first["train_loss"]
    coarse, fine = evaluate_run(run_dir, [paths[(33, 64)], paths[(65, 128)]])
    assert fine.grid == [65, 128]
    # against trivial forecasts of the same test pairs: vorticity and divergence under half of
    # persistence (measured SFNO 0.34 / 0.12, SphericalCNN 0.38 / 0.12 of it). The height is
    # dominated by the gravity waves of the unbalanced random initial states, which oscillate
    # about the mean: there the mean field beats persistence (30 m vs 40 m) and the models beat
    # the mean field (27 m, 26 m), not half of it -- as at the full budget of
    # benchmarks/swe_accuracy.py (24.6 m vs persistence's 43.3 m).
    baselines = _trivial_baselines(paths[(33, 64)], slice(0, 36), slice(42, 48))
    for name, scores in coarse.weather_scores.items():
        persistence, mean_field = baselines[name]
        error = scores["rmse"][0]
        if name == "geopotential_height":
            assert error < min(persistence, mean_field), (name, error, persistence, mean_field)
        else:
            assert error < 0.5 * persistence, (name, error, persistence)
    # the same band-limited operator at twice the resolution: the training-grid error (equal to
    # 4 digits measured; was allowed 50% worse)
    assert fine.rel_l2 < 1.02 * coarse.rel_l2
    # on the sphere: WeatherBench-2 scores per variable and lead step, from the written predictions
    assert set(fine.weather_scores) == {"geopotential_height", "vorticity", "divergence"}
    with xr.open_dataset(fine.predictions) as ds:
        expected = lat_weighted_rmse(
            ds["vorticity"].astype("float64"), ds["vorticity_truth"].astype("float64")
        )
    # WeatherBench 2's RMSE over forecasts: the root of the pairs' mean squared error
    np.testing.assert_allclose(
        fine.weather_scores["vorticity"]["rmse"],
        np.sqrt((expected**2).mean("pair").values),
        rtol=1e-6,
    )
