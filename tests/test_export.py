"""``opflow export``: trained runs as ONNX files and torch.export programs that compute what
the Python surrogate computes, at any batch size, on the grid they were exported for."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
import yaml
from conftest import field_dataset

import opflow
from opflow.cli import main as cli
from opflow.errors import ConfigError, ResolutionError
from opflow.export import export_run
from opflow.train import load_config, train

TOLERANCE = 1e-5  # max |exported - torch| / RMS of the prediction


def _train(work, name, data_file, args, data_extra=()):
    config = {
        "data": {"path": str(data_file), "input_variables": ["vorticity"], "t_in": 2,
                 "split": {"train": 6, "val": 1, "test": 1}, **dict(data_extra)},
        "model": {"name": name, "args": args},
        "training": {"epochs": 2, "batch_size": 4, "output_dir": str(work / f"run_{name}")},
    }  # fmt: skip
    (work / f"{name}.yaml").write_text(yaml.safe_dump(config))
    return train(load_config(work / f"{name}.yaml"), progress=False)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Briefly trained FNO, LocalNO, MgNO, SpecBoost (32x32 torus), SFNO and SphericalCNN
    (17x32 sphere) runs, with the fields they were trained on and finer versions of them."""
    work = tmp_path_factory.mktemp("export")
    fields = {}
    for ny, nx in ((32, 32), (48, 40)):
        fields[ny, nx] = field_dataset(n_samples=8, n_times=3, ny=ny, nx=nx, seed=1)
    for nlat, nlon in ((17, 32), (33, 64)):
        ds = field_dataset(8, 3, nlat, nlon, dims=("sample", "time", "lat", "lon"), seed=2)
        lat, lon = np.linspace(-90, 90, nlat), 360 * np.arange(nlon) / nlon
        fields[nlat, nlon] = ds.assign_coords(lat=lat, lon=lon)
    fields[32, 32].to_netcdf(work / "plane.nc")
    fields[17, 32].to_netcdf(work / "sphere.nc")
    sphere = {"spatial_dims": ["lat", "lon"], "periodic": False}
    small = {"hidden_channels": 8, "n_layers": 2}
    return work, fields, {
        "FNO": _train(work, "FNO", work / "plane.nc", {"n_modes": [6, 6], **small}),
        "LocalNO": _train(work, "LocalNO", work / "plane.nc", {
            "n_modes": [6, 6], "differential_kernel": True, "disco_radius": 0.1,
            "boundary": "periodic", **small}),
        "MgNO": _train(work, "MgNO", work / "plane.nc", {
            "boundary": "periodic", "coarsest_points": 4, **small}),
        "SFNO": _train(work, "SFNO", work / "sphere.nc", {"lmax": 8, **small}, sphere),
        "SphericalCNN": _train(work, "SphericalCNN", work / "sphere.nc", {
            "lmax": 8, "hidden_channels": 8, "n_levels": 2, "anchors": 4}, sphere),
        "SpecBoost": _train(work, "SpecBoost", work / "plane.nc", {"stages": [
            {"name": "FNO", "args": {"n_modes": [6, 6], **small}}] * 2}),
    }  # fmt: skip


def _states(ds, n=5):
    """``n`` states ``(n, 2, *grid)`` from the data: a batch size the export never traced."""
    return np.ascontiguousarray(ds.vorticity.values[:n, :2], dtype=np.float32)


def _reference(run, states):
    return opflow.load(run)(torch.from_numpy(states)).numpy()


def _relative_difference(got, expected):
    return float(np.max(np.abs(got - expected)) / np.sqrt(np.mean(expected**2)))


def _onnx_prediction(path, states):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"state": states})[0]


def _program_prediction(path, states):
    program = torch.export.load(str(path))
    with torch.no_grad():
        return program.module()(torch.from_numpy(states)).numpy()


@pytest.mark.parametrize(
    "name, grids", [("FNO", [(32, 32), (48, 40)]), ("SFNO", [(17, 32), (33, 64)])]
)
def test_cli_export_matches_torch_at_two_grids_in_both_formats(runs, name, grids, capsys):
    work, fields, trained = runs
    for grid in grids:
        states = _states(fields[grid])
        expected = _reference(trained[name], states)
        for suffix, predict in ((".onnx", _onnx_prediction), (".pt2", _program_prediction)):
            path = work / f"{name}_{grid[0]}x{grid[1]}{suffix}"
            size = [str(n) for n in grid]
            assert cli(["export", str(trained[name]), "-o", str(path), "--grid", *size]) == 0
            assert f"wrote {path}" in capsys.readouterr().out
            got = predict(path, states)
            assert got.shape == expected.shape == (5, 1, *grid)
            assert _relative_difference(got, expected) < TOLERANCE, (name, grid, suffix)


@pytest.mark.parametrize("name", ["LocalNO", "MgNO", "SpecBoost", "SphericalCNN"])
def test_every_other_model_family_exports_too(runs, name):
    work, fields, trained = runs
    grid = (17, 32) if name == "SphericalCNN" else (32, 32)
    states = _states(fields[grid], n=3)
    result = export_run(trained[name], work / f"{name}.onnx")
    assert result.grid == grid
    got = _onnx_prediction(result.path, states)
    assert _relative_difference(got, _reference(trained[name], states)) < TOLERANCE


def test_exported_graphs_have_no_fft_and_the_normaliser_inside(runs):
    """The whole physical map is in the file: a constant input of the data's mean gives the
    surrogate's prediction; no FFT/DFT op (the gemm path's matrix products instead)."""
    work, fields, trained = runs
    for name in ("FNO", "SFNO"):
        path = work / f"{name}_plain.onnx"
        export_run(trained[name], path)
        ops = {node.op_type for node in onnx.load(str(path)).graph.node}
        assert "MatMul" in ops and not {op for op in ops if "DFT" in op or "FFT" in op}
        program = torch.export.load(str(export_run(trained[name], path.with_suffix(".pt2")).path))
        assert not [n for n in program.graph.nodes if "fft" in str(n.target)]
    surrogate = opflow.load(trained["FNO"])
    mean = surrogate.normalizer.mean["vorticity"] + 3.0  # far from zero: decode/encode matter
    states = np.full((2, 2, 32, 32), mean, dtype=np.float32)
    got = _onnx_prediction(work / "FNO_plain.onnx", states)
    assert _relative_difference(got, surrogate(torch.from_numpy(states)).numpy()) < TOLERANCE


def test_sidecar_describes_the_file(runs):
    work, _, trained = runs
    result = export_run(trained["SFNO"], work / "sphere.onnx", grid=(33, 64))
    sidecar = json.loads(result.sidecar.read_text())
    assert result.sidecar.name == "sphere.onnx.json"
    assert sidecar["input"] == {
        "name": "state", "shape": ["batch", 2, 33, 64], "dtype": "float32",
        "channels": ["vorticity[t-1]", "vorticity[t]"],
    }  # fmt: skip
    assert sidecar["output"]["channels"] == ["vorticity[t+1]"]
    assert sidecar["grid"] == {"dims": ["lat", "lon"], "sizes": [33, 64]}
    assert sidecar["training_grid"]["sizes"] == [17, 32]
    assert sidecar["units"] == {"vorticity": "1"}
    assert (sidecar["t_in"], sidecar["t_out"], sidecar["time_step"]) == (2, 1, 1.0)
    assert sidecar["versions"]["opflow"] == opflow.__version__
    assert sidecar["versions"]["torch"] == torch.__version__
    assert sidecar["check"]["max_relative_difference"] < TOLERANCE


def test_bad_export_requests_are_clear_errors_and_write_nothing(runs, capsys):
    work, _, trained = runs
    out = work / "bad"
    with pytest.raises(ResolutionError, match="n_modes"):  # 6 modes per axis need 6 points
        export_run(trained["FNO"], out / "coarse.onnx", grid=(4, 4))
    with pytest.raises(ConfigError, match="2 sizes"):
        export_run(trained["FNO"], out / "three.onnx", grid=(32, 32, 32))
    with pytest.raises(ConfigError, match="format"):
        export_run(trained["FNO"], out / "model.onnx", format="tflite")
    assert not out.exists() or not any(out.iterdir())
    assert cli(["export", str(work / "no_such_run"), "-o", str(out / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("opflow: error:") and len(err.strip().splitlines()) == 1
