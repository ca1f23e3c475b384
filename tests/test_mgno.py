"""MgNO and its multigrid V-cycle: parameter count, boundary conditions, grids, training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
import yaml

from opflow.data.recipes import generate, load_recipe
from opflow.errors import ConfigError, ShapeError
from opflow.evaluate import evaluate_run
from opflow.layers.multigrid import (
    MultigridConv,
    _Prolongation,
    finer,
    full_weighting,
    inject,
    interpolate,
    level_sizes,
)
from opflow.models import MgNO, build_model
from opflow.train import load_config, train


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_paper_darcy_configuration_has_the_public_codes_parameter_count():
    model = build_model(
        "MgNO",
        in_channels=1,
        out_channels=1,
        hidden_channels=24,
        n_layers=4,
        smoothing=[[1, 0]] * 5 + [[2, 0]],
        boundary="zero",
    )
    assert _n_params(model) == 572_661
    # residual restriction adds one A stencil per level transition
    with_residual = MgNO(residual_restriction=True)
    assert _n_params(with_residual) - 572_661 == 5 * 9 * (24 * 1 + 3 * 24 * 24)


def test_level_count_follows_the_grid():
    assert level_sizes((64, 64), 3) == [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    cycle = MultigridConv(1, 4, [[1, 0]] * 6, coarsest_points=3)
    assert cycle.plan((65, 65)) == (0, [(65, 65), (33, 33), (17, 17), (9, 9), (5, 5), (3, 3)])
    shift, grids = cycle.plan((129, 129))  # one fixed level on top of the learned ones
    assert shift == 1 and grids[0] == (65, 65) and grids[-1] == (3, 3)
    shift, grids = cycle.plan((33, 33))  # interpolated up to the learned finest grid
    assert shift == -1 and grids[0] == (65, 65)
    assert cycle.plan((128, 96))[1][0] == (64, 48)
    # the layer alone runs other grids through its fixed levels
    assert cycle(torch.randn(1, 1, 129, 129)).shape == (1, 4, 129, 129)
    assert cycle(torch.randn(1, 1, 33, 33)).shape == (1, 4, 33, 33)
    fixed = MultigridConv(1, 4, [[1, 0]] * 3, coarsest_points=None)
    assert fixed.plan((129, 64)) == (0, [(129, 64), (65, 32), (33, 16)])


@pytest.mark.parametrize("boundary", ["zero", "periodic", "reflect"])
def test_fixed_transfers_are_exact_on_linear_fields(boundary):
    n = 17 if boundary != "periodic" else 16
    coarse_x = torch.linspace(0.0, 1.0, n, dtype=torch.float64)
    field = (coarse_x[:, None] + 2 * coarse_x[None, :])[None, None]
    fine_grid = finer((n, n))
    fine = interpolate(field, fine_grid, boundary)
    assert fine.shape[-2:] == fine_grid
    torch.testing.assert_close(inject(fine), field)  # interpolation keeps the coarse values
    if boundary == "zero":  # vertex grid: linear in between, exactly
        fine_x = torch.linspace(0.0, 1.0, fine_grid[0], dtype=torch.float64)
        torch.testing.assert_close(fine[0, 0], fine_x[:, None] + 2 * fine_x[None, :])
    restricted = full_weighting(fine, boundary)  # [1, 2, 1]/4 keeps linear fields inside
    torch.testing.assert_close(restricted[..., 1:-1, 1:-1], field[..., 1:-1, 1:-1])


def test_mgno_on_a_finer_grid_agrees_with_the_trained_grid_at_its_points():
    torch.manual_seed(0)
    model = MgNO(hidden_channels=4, n_layers=2, smoothing=[[1, 0]] * 4, coarsest_points=3)
    model = model.double()
    coarse = torch.randn(2, 1, 17, 17, dtype=torch.float64)
    fine = interpolate(coarse, (33, 33), "zero")  # a finer sampling of the same field
    torch.testing.assert_close(inject(model(fine)), model(coarse))


@pytest.mark.parametrize("shape", [(65, 65), (64, 64), (129, 129), (33, 47), (20, 20)])
def test_every_grid_gives_its_own_shape_and_every_weight_is_used(shape):
    torch.manual_seed(0)
    model = MgNO(
        hidden_channels=4, n_layers=2, smoothing=[[1, 1], [1, 1], [2, 1]], coarsest_points=9
    )
    x = torch.randn(2, 1, *shape)
    out = model(x)
    assert out.shape == (2, 1, *shape)
    out.square().sum().backward()
    if shape in ((65, 65), (64, 64)):  # the built-for grids run every level
        unused = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.any()]
        assert unused == []


def test_periodic_boundary_makes_the_operator_shift_equivariant():
    torch.manual_seed(0)
    model = MgNO(
        hidden_channels=6,
        n_layers=2,
        smoothing=[[1, 1]] * 3,
        boundary="periodic",
        coarsest_points=8,
        norm=True,
    ).double()
    x = torch.randn(2, 1, 32, 32, dtype=torch.float64)
    shift = 4  # a whole number of coarsest-grid cells: strided stencils commute with it
    out = model(x)
    shifted = model(torch.roll(x, shifts=(shift, -shift), dims=(-2, -1)))
    torch.testing.assert_close(shifted, torch.roll(out, shifts=(shift, -shift), dims=(-2, -1)))
    # zero padding breaks the symmetry at the boundary: the test above can fail
    model_zero = MgNO(hidden_channels=6, n_layers=2, smoothing=[[1, 1]] * 3, coarsest_points=8)
    model_zero = model_zero.double()
    out = model_zero(x)
    shifted = model_zero(torch.roll(x, shifts=(shift, -shift), dims=(-2, -1)))
    assert (shifted - torch.roll(out, shifts=(shift, -shift), dims=(-2, -1))).abs().max() > 1e-3


def test_periodic_prolongation_equals_prolongation_of_the_periodic_extension():
    torch.manual_seed(0)
    prolong = _Prolongation(3, 2, "periodic").double()
    coarse = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    tiled = coarse.repeat(1, 1, 3, 3)  # three periods per axis
    full = F.conv_transpose2d(tiled, prolong.weight, stride=2, padding=1)
    torch.testing.assert_close(prolong(coarse, (16, 16)), full[..., 16:32, 16:32])


def test_bad_arguments_and_inputs_raise_clear_errors():
    with pytest.raises(ConfigError, match="boundary"):
        MgNO(boundary="dirichlet")
    with pytest.raises(ConfigError, match="pre, post"):
        MgNO(smoothing=[[0, 1], [1, 0]])
    with pytest.raises(ConfigError, match="global_residual"):
        MgNO(in_channels=1, out_channels=2, global_residual=True)
    with pytest.raises(ShapeError, match="in_channels"):
        MgNO(in_channels=2)(torch.randn(1, 1, 16, 16))


DARCY_RECIPE = """
name: tiny_darcy
equation: darcy
resolutions: [17, 33]
n_samples: 96
seed: 0
"""


def test_mgno_trains_on_darcy_from_a_config_and_evaluates_at_twice_the_resolution(tmp_path):
    (tmp_path / "recipe.yaml").write_text(DARCY_RECIPE)
    files = generate(load_recipe(tmp_path / "recipe.yaml"), tmp_path / "d.nc", progress=False)
    config = {
        "data": {
            "path": str(files[17]),
            "input_variables": ["permeability"],
            "output_variables": ["pressure"],
            "time_dim": None,
            "periodic": False,
            "split": {"train": 80, "val": 8, "test": 8},
        },
        "model": {
            "name": "MgNO",
            "args": {
                "hidden_channels": 8,
                "n_layers": 2,
                "smoothing": [[1, 0], [1, 0], [2, 0]],
                "coarsest_points": 5,
            },
        },
        "loss": {"kind": "relative_lp"},
        "optimizer": {"lr": 3e-3},
        "scheduler": {"name": "onecycle"},
        "training": {
            "epochs": 15,
            "batch_size": 8,
            "threads": 1,
            "output_dir": str(tmp_path / "run"),
        },
    }
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(config))
    run = train(load_config(tmp_path / "cfg.yaml"), progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    # the trivial baseline: the training split's mean pressure field, for every test sample
    pressure = xr.open_dataset(files[17]).pressure.values
    mean_field, test = pressure[:80].mean(axis=0), pressure[88:96]
    mean_predictor = np.mean(
        np.linalg.norm((test - mean_field).reshape(8, -1), axis=1)
        / np.linalg.norm(test.reshape(8, -1), axis=1)
    )  # 0.27
    results = evaluate_run(run, [files[17], files[33]])
    assert results[0].grid == [17, 17] and results[1].grid == [33, 33]
    assert results[0].rel_l2 < 0.5 * mean_predictor  # 0.10
    # zero-shot at 2x: the trained-grid prediction, interpolated (one fixed level): 0.100
    assert results[1].rel_l2 < 1.15 * results[0].rel_l2
