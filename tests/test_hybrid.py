"""Hybrid runs: a trained FNO coupled with opflow's Navier–Stokes solver (parareal, anchoring),
checked against the solver run alone, in one call, as the reference."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import xarray as xr
import yaml

import opflow
from opflow.data.recipes import generate, load_recipe
from opflow.errors import ConfigError, ShapeError
from opflow.hybrid import (
    NavierStokesPropagator,
    anchored_rollout,
    conserve_mean,
    on_grid,
    parareal,
    surrogate_propagator,
)
from opflow.run.spec import Task
from opflow.solvers import navier_stokes
from opflow.train import load_config, train

VISCOSITY, DT, SLICES = 1.0e-2, 1 / 64, 8
RECIPE = f"""\
name: hybrid_ns
equation: navier_stokes
viscosity: {VISCOSITY}
resolutions: [16]
n_samples: 128
n_records: 8
record_interval: 1.0
seed: 5
dtype: float64
batch_size: 128
"""


@pytest.fixture(scope="module")
def coupled(tmp_path_factory):
    """An FNO trained on 16x16 Navier–Stokes (ν = 1e-2, one time unit per step; ~0.6% one-step
    error), the fine propagator, and held-out states at t = 0 (random fields) and t = 2."""
    work = tmp_path_factory.mktemp("hybrid")
    (work / "recipe.yaml").write_text(RECIPE)
    generate(load_recipe(work / "recipe.yaml"), work / "ns.nc", progress=False)
    config = {
        "data": {"path": str(work / "ns.nc"), "input_variables": ["vorticity"], "t_in": 1,
                 "windows": "all", "split": {"train": 120, "val": 4, "test": 4}},
        "model": {"name": "FNO", "args": {"n_modes": [8, 8], "hidden_channels": 24,
                                          "n_layers": 3, "positional_embedding": "periodic"}},
        "optimizer": {"lr": 5.0e-3},
        "training": {"epochs": 40, "batch_size": 32, "output_dir": str(work / "run")},
    }  # fmt: skip
    (work / "config.yaml").write_text(yaml.safe_dump(config))
    surrogate = opflow.load(train(load_config(work / "config.yaml"), progress=False))
    with xr.open_dataset(work / "ns.nc") as ds:
        held_out = torch.from_numpy(ds.vorticity.values[124:128])  # the test split
    fine = NavierStokesPropagator(VISCOSITY, 1.0, DT)
    return surrogate, fine, {0: held_out[:, 0], 2: held_out[:, 2]}


def _solver_alone(w0: torch.Tensor, records: int) -> torch.Tensor:
    """The reference: one call of the solver, ``(B, records, n, n)``."""
    forcing = navier_stokes.default_forcing(w0.shape[-1], w0.dtype)
    return navier_stokes.solve(w0, VISCOSITY, 1.0, records, forcing=forcing, dt=DT)


def _relative_error(trajectory: torch.Tensor, reference: torch.Tensor) -> float:
    """Max over samples and slices of the relative L2 error; ``(B, N, n, n)`` each."""
    diff = (trajectory - reference).flatten(2).norm(dim=2)
    return float((diff / reference.flatten(2).norm(dim=2)).max())


@pytest.mark.parametrize("start", [0, 2])
def test_parareal_reaches_the_solvers_trajectory_in_fewer_iterations_than_slices(coupled, start):
    surrogate, fine, states = coupled
    coarse = surrogate_propagator(surrogate, conserve_mean)
    w0 = states[start]
    reference = _solver_alone(w0, SLICES)
    alone = anchored_rollout(coarse, fine, w0[:, None], SLICES, anchor_every=SLICES + 1)
    assert _relative_error(alone[:, :, 0], reference) > 1e-3  # the surrogate alone: ~3e-2
    result = parareal(coarse, fine, w0[:, None], SLICES, tol=1e-6)
    assert result.converged
    assert result.iterations < SLICES  # measured 5 (from random fields) and 4 (from t = 2)
    assert _relative_error(result.trajectory[:, :, 0], reference) < 1e-6  # measured 1.1e-7
    # slices already exact are not solved again: sum over k of (N - k + 1)
    k = result.iterations
    assert result.fine_solves == sum(SLICES - j + 1 for j in range(1, k + 1))


def test_parareal_fine_solves_in_worker_processes_give_the_same_answer(coupled):
    surrogate, fine, states = coupled
    coarse = surrogate_propagator(surrogate, conserve_mean)
    w0 = states[2][:, None]
    serial = parareal(coarse, fine, w0, SLICES)
    spread = parareal(coarse, fine, w0, SLICES, workers=2)
    assert spread.iterations == serial.iterations
    torch.testing.assert_close(spread.trajectory, serial.trajectory, rtol=0, atol=1e-12)


def test_anchored_rollout_is_the_solver_every_kth_step(coupled):
    surrogate, fine, states = coupled
    coarse = surrogate_propagator(surrogate, conserve_mean)
    w0 = states[0][:, None]
    reference = _solver_alone(states[0], 16)
    solver_only = anchored_rollout(coarse, fine, w0, 16, anchor_every=1)
    assert _relative_error(solver_only[:, :, 0], reference) < 1e-12
    surrogate_only = anchored_rollout(coarse, fine, w0, 16, anchor_every=17)
    unconstrained = anchored_rollout(surrogate_propagator(surrogate), fine, w0, 16, 17)
    plain = surrogate.rollout(w0.float(), 16).double()  # Surrogate.rollout, in float32
    assert _relative_error(unconstrained[:, :, 0], plain) < 1e-6
    every_other = anchored_rollout(coarse, fine, w0, 16, anchor_every=2)
    last = slice(15, 16)
    anchored_error = _relative_error(every_other[:, last, 0], reference[:, last])
    surrogate_error = _relative_error(surrogate_only[:, last, 0], reference[:, last])
    assert anchored_error < 0.5 * surrogate_error  # measured 1.7e-4 vs 7.5e-4 at t = 16


def test_on_grid_runs_a_propagator_on_a_coarser_grid():
    """Restrict, propagate, interpolate back: exact for fields the coarse grid resolves."""
    axis = torch.arange(16, dtype=torch.float64) / 16
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    smooth = torch.sin(2 * torch.pi * (2 * x + y))[None, None]  # |k| <= 2
    fine_only = torch.cos(2 * torch.pi * 6 * x)[None, None]  # k = 6: not on 8x8
    identity = on_grid(lambda state: state, (8, 8))
    torch.testing.assert_close(identity(smooth), smooth, rtol=0, atol=1e-12)
    torch.testing.assert_close(identity(smooth + fine_only), smooth, rtol=0, atol=1e-12)
    doubled = on_grid(lambda state: 2 * state, (8, 8))
    torch.testing.assert_close(doubled(smooth), 2 * smooth, rtol=0, atol=1e-12)


def test_conserve_mean_keeps_each_channels_mean():
    state = torch.randn(3, 2, 8, 10, dtype=torch.float64) + 5.0
    prediction = torch.randn(3, 2, 8, 10, dtype=torch.float64)
    kept = conserve_mean(state, prediction)
    torch.testing.assert_close(kept.mean((2, 3)), state.mean((2, 3)), rtol=0, atol=1e-14)
    torch.testing.assert_close(kept - kept.mean((2, 3), keepdim=True),
                               prediction - prediction.mean((2, 3), keepdim=True))  # fmt: skip


def test_bad_hybrid_requests_are_clear_errors(coupled):
    surrogate, fine, states = coupled
    coarse = surrogate_propagator(surrogate)
    with pytest.raises(ConfigError, match="slices"):
        parareal(coarse, fine, states[0][:, None], 0)
    with pytest.raises(ConfigError, match="anchor_every"):
        anchored_rollout(coarse, fine, states[0][:, None], 4, anchor_every=0)
    with pytest.raises(ShapeError, match="vorticity"):
        fine(states[0])  # (B, n, n): no channel axis
    for task in (
        Task(["vorticity"], ["vorticity"], t_in=2),  # needs a history
        Task(["vorticity"], ["vorticity"], t_out=2),  # two steps at once, not a rollout
        Task(["vorticity"], ["pressure"]),  # another variable out
    ):
        with pytest.raises(ShapeError, match="state-to-state"):
            surrogate_propagator(SimpleNamespace(task=task))
