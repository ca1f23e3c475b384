"""Shared helpers: small real datasets written to disk with xarray."""

from __future__ import annotations

import os

# Triton binds its own library functions (tl.zeros, ...) to the interpreter or to the GPU
# compiler when ``triton`` is first imported, which torch or neuraloperator may do early: the
# CPU interpreter for tests/test_triton.py must be switched on before anything is imported.
os.environ.setdefault("TRITON_INTERPRET", "1")

from pathlib import Path  # noqa: E402

import numpy as np
import pytest
import xarray as xr


def field_dataset(
    n_samples: int = 6,
    n_times: int = 5,
    ny: int = 16,
    nx: int = 16,
    dims: tuple[str, str, str, str] = ("sample", "time", "y", "x"),
    seed: int = 0,
) -> xr.Dataset:
    """Smooth random periodic fields with CF attrs, as opflow writes them."""
    rng = np.random.default_rng(seed)
    y = np.arange(ny) / ny
    x = np.arange(nx) / nx
    phase = rng.uniform(0, 2 * np.pi, size=(n_samples, 1, 1, 1))
    t = np.arange(n_times)[None, :, None, None]
    field = np.sin(2 * np.pi * (x[None, None, None, :] + 0.1 * t) + phase) * np.cos(
        2 * np.pi * y[None, None, :, None]
    )
    field = field + 0.1 * rng.standard_normal(field.shape)
    s, tt, yy, xx = dims
    return xr.Dataset(
        {
            "vorticity": (
                (s, tt, yy, xx),
                field.astype(np.float32),
                {"units": "1", "long_name": "w"},
            )
        },
        coords={
            s: np.arange(n_samples),
            tt: ("time" if tt == "time" else tt, np.arange(n_times, dtype=float)),
            yy: (yy, y, {"units": "1"}),
            xx: (xx, x, {"units": "1"}),
        },
    )


def required_capabilities() -> set[str]:
    """Capabilities whose tests must run, not skip: ``$OPFLOW_REQUIRE`` (comma separated:
    ``native``, ``triton``), and both of them in CI (``CI=true``), so that CI cannot lose the
    C kernel's or the Triton kernels' tests to a missing compiler or package unnoticed."""
    names = {n.strip() for n in os.environ.get("OPFLOW_REQUIRE", "").split(",") if n.strip()}
    if os.environ.get("CI", "").lower() == "true":
        names |= {"native", "triton"}
    return names


def needs(capability: str, available: bool, why: str) -> pytest.MarkDecorator:
    """Mark tests that need ``capability``: skipped where it is missing, failed where it is
    missing but required (:func:`required_capabilities`)."""
    if available or capability not in required_capabilities():
        return pytest.mark.skipif(not available, reason=why)
    return pytest.mark.missing_capability(capability, why)


def pytest_configure(config):
    config.addinivalue_line("markers", "missing_capability(name, why): fails the test")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("missing_capability"):
        name, why = mark.args
        pytest.fail(f"{name} is required here (CI=true or OPFLOW_REQUIRE) but missing: {why}")


def last_weights(run: Path) -> dict:
    """The model tensors of a run's last checkpoint, read from its safetensors file."""
    import json

    import safetensors.torch

    pointer = json.loads((run / "checkpoints/last.json").read_text())
    tensors = safetensors.torch.load_file(run / "checkpoints" / pointer["file"])
    return {k: v for k, v in tensors.items() if k.startswith("model.")}


@pytest.fixture
def nc_file(tmp_path: Path) -> Path:
    path = tmp_path / "fields.nc"
    field_dataset().to_netcdf(path)
    return path


NS_TRAINING_RECIPE = """\
name: train_ns
equation: navier_stokes
viscosity: 1.0e-3
resolutions: [32, 64]
n_samples: 24
n_records: 6
record_interval: 1.0
seed: 3
dtype: float32
batch_size: 24
"""


def ns_training_config(data_path: Path, out: Path, epochs: int = 3, **training) -> dict:
    """A small FNO training config (as a dict) on :func:`ns_files` data."""
    return {
        "data": {
            "path": str(data_path),
            "input_variables": ["vorticity"],
            "t_in": 1,
            "t_out": 1,
            "time_start": 1,
            "split": {"train": 16, "val": 4, "test": 4},
        },
        "model": {"name": "FNO", "args": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2}},
        "optimizer": {"lr": 1.0e-2},
        "training": {
            "epochs": epochs,
            "batch_size": 8,
            "seed": 0,
            "threads": 1,
            "output_dir": str(out),
        }
        | training,
    }


@pytest.fixture(scope="module")
def ns_files(tmp_path_factory) -> dict[int, Path]:
    """Navier–Stokes ν = 1e-3 at 32² and 64² from one 64² solve (24 trajectories), made once
    per test module."""
    from opflow.data.recipes import generate, load_recipe

    folder = tmp_path_factory.mktemp("ns")
    (folder / "recipe.yaml").write_text(NS_TRAINING_RECIPE)
    return generate(load_recipe(folder / "recipe.yaml"), folder / "ns.nc", progress=False)


def write_yaml(path: Path, data: dict) -> Path:
    """``data`` as a YAML file at ``path``."""
    import yaml

    path.write_text(yaml.safe_dump(data))
    return path


def outputs_and_gradients(run, x, parameters: dict, settings, apply, upstream=None) -> list:
    """``run(x)`` once per setting (``apply(setting)`` first) with the gradients of the loss
    ``<y, upstream>`` (default: the sum of ``y²``) for every parameter by name, and for ``x``
    under ``"input"`` when it requires one: how the tests hold a fast path (fused, folded) to
    the composition it replaces. Returns ``[(y, {name: gradient}), ...]`` in setting order."""
    import torch

    names = (["input"] if x.requires_grad else []) + list(parameters)
    inputs = ([x] if x.requires_grad else []) + list(parameters.values())
    results = []
    for setting in settings:
        apply(setting)
        y = run(x)
        loss = y.square().sum() if upstream is None else (y * upstream).sum()
        results.append((y.detach(), dict(zip(names, torch.autograd.grad(loss, inputs)))))
    return results
