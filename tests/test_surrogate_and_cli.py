"""The embedding API (opflow.load) and the CLI, on a small real training run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
import yaml

import opflow
from opflow.errors import DataError, ShapeError

RECIPE = """\
name: cli_ns
equation: navier_stokes
viscosity: 1.0e-3
resolutions: [32, 64]
n_samples: 20
n_records: 5
record_interval: 1.0
seed: 11
dtype: float32
batch_size: 20
"""


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "opflow.cli", *args], cwd=cwd, capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """generate -> train -> evaluate through the command line, as a user would."""
    work = tmp_path_factory.mktemp("cli")
    (work / "recipe.yaml").write_text(RECIPE)
    gen = _run("generate", "recipe.yaml", "-o", "data/ns.nc", cwd=work)
    assert gen.returncode == 0, gen.stderr
    config = {
        "data": {
            "path": "data/ns_32.nc",
            "input_variables": ["vorticity"],
            "t_in": 2,
            "t_out": 1,
            "split": {"train": 14, "val": 3, "test": 3},
        },
        "model": {"name": "FNO", "args": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2}},
        "optimizer": {"lr": 1.0e-2},
        "training": {"epochs": 3, "batch_size": 8, "output_dir": "run"},
    }
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    train = _run("train", "config.yaml", "--set", "training.epochs=40", cwd=work)
    assert train.returncode == 0, train.stdout + train.stderr
    evaluate = _run("evaluate", "run", "--data", "data/ns_32.nc", "data/ns_64.nc", cwd=work)
    assert evaluate.returncode == 0, evaluate.stderr
    return work, gen.stdout, train.stdout, evaluate.stdout


def test_cli_generate_train_evaluate(cli_run):
    work, gen, train, evaluate = cli_run
    assert "ns_32.nc (32x32)" in gen and "ns_64.nc (64x64)" in gen
    assert train.count("  train ") == 40 and "epoch 40/40" in train
    lines = [ln for ln in evaluate.splitlines() if ln.startswith("ns_")]
    assert len(lines) == 2 and "32x32" in lines[0] and "64x64" in lines[1]
    errors = [float(ln.split()[3]) for ln in lines]
    # the trivial baseline: persistence (the last input step as the prediction), on the same
    # test pairs (samples 17-19, windows t0 = 0..3: inputs t0, t0 + 1, target t0 + 2)
    w = xr.open_dataset(work / "data/ns_32.nc").vorticity.values[17:20]
    last, target = w[:, 1:5], w[:, 2:6]
    persistence = np.mean(
        np.linalg.norm((last - target).reshape(-1, 32 * 32), axis=1)
        / np.linalg.norm(target.reshape(-1, 32 * 32), axis=1)
    )
    assert all(0 < e < 0.5 * persistence for e in errors)  # 0.031 vs 0.283 measured
    out = work / "run" / "evaluation"
    for name in ("fields_ns_32.png", "fields_ns_64.png", "error_spectrum.png", "results.json"):
        assert (out / name).stat().st_size > 0
    pred = xr.open_dataset(out / "predictions_ns_64.nc")
    assert pred.vorticity.shape == (3 * 4, 1, 64, 64)  # 3 test samples x windows t0 = 0..3
    truth = xr.open_dataset(work / "data/ns_64.nc")
    np.testing.assert_array_equal(pred.vorticity_truth.values[0, 0], truth.vorticity.values[17, 2])


def test_cli_errors_are_one_line_messages(cli_run):
    work = cli_run[0]
    missing = _run("train", "nope.yaml", cwd=work)
    assert missing.returncode == 2
    assert (
        missing.stderr.startswith("opflow: error: No such file")
        and "Traceback" not in missing.stderr
    )
    bad = _run("evaluate", "run", "--data", "data/missing.nc", cwd=work)
    assert bad.returncode == 2 and "No such data file" in bad.stderr


def test_surrogate_steps_xarray_numpy_and_torch_at_any_resolution(cli_run):
    work = cli_run[0]
    surrogate = opflow.load(work / "run")
    ds = xr.open_dataset(work / "data/ns_64.nc")
    state = ds[["vorticity"]].isel(sample=[17, 18], time=slice(0, 3))
    out = surrogate(state)
    assert isinstance(out, xr.Dataset)
    assert out.vorticity.dims == ("sample", "time", "y", "x")
    assert out.vorticity.shape == (2, 1, 64, 64)
    np.testing.assert_allclose(out.time.values, [3.0])
    np.testing.assert_array_equal(out.x.values, ds.x.values)
    # the same prediction from arrays (channels = the last t_in steps)
    arr = ds.vorticity.values[17:19, 1:3]
    np.testing.assert_allclose(
        surrogate(arr)[:, 0], out.vorticity.values[:, 0], rtol=1e-5, atol=1e-6
    )
    tensor = surrogate(torch.from_numpy(arr[0]))
    assert tensor.shape == (1, 64, 64)
    # one sample, no sample dim
    single = surrogate(ds[["vorticity"]].isel(sample=17, time=slice(1, 3)))
    assert single.vorticity.dims == ("time", "y", "x")


def test_rollout_is_repeated_application(cli_run):
    work = cli_run[0]
    surrogate = opflow.load(work / "run")
    ds = xr.open_dataset(work / "data/ns_32.nc")
    state = ds[["vorticity"]].isel(sample=[18], time=slice(0, 2))
    traj = surrogate.rollout(state, steps=3)
    assert traj.vorticity.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(traj.time.values, [2.0, 3.0, 4.0])
    first = surrogate(state)
    second = surrogate(xr.concat([state, first], dim="time"))
    np.testing.assert_allclose(
        traj.vorticity.values[:, 1], second.vorticity.values[:, 0], rtol=1e-5, atol=1e-6
    )


def test_surrogate_bad_input(cli_run):
    surrogate = opflow.load(cli_run[0] / "run")
    with pytest.raises(ShapeError, match="2 = 1 variables x 2 steps"):
        surrogate(np.zeros((1, 3, 32, 32), dtype=np.float32))
    with pytest.raises(DataError, match="no variable"):
        surrogate(xr.Dataset({"pressure": (("time", "y", "x"), np.zeros((2, 32, 32)))}))
