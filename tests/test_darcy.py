"""The Darcy solver on a manufactured solution, and the Darcy recipe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse.linalg
import xarray as xr

from opflow.data.recipes import DarcyRecipe, generate, load_recipe
from opflow.errors import ConfigError, DataError
from opflow.solvers import darcy


def _manufactured(n: int):
    """u = sin(pi x) sin(2 pi y) (zero on the boundary), a = 2 + sin(pi x + y), f = -div(a grad u)
    in closed form."""
    x = np.linspace(0.0, 1.0, n)
    X, Y = np.meshgrid(x, x)  # [y, x]
    u = np.sin(np.pi * X) * np.sin(2 * np.pi * Y)
    a = 2 + np.sin(np.pi * X + Y)
    u_x = np.pi * np.cos(np.pi * X) * np.sin(2 * np.pi * Y)
    u_y = 2 * np.pi * np.sin(np.pi * X) * np.cos(2 * np.pi * Y)
    a_x, a_y = np.pi * np.cos(np.pi * X + Y), np.cos(np.pi * X + Y)
    f = -(a_x * u_x + a_y * u_y - 5 * np.pi**2 * a * u)
    return a, f, u


def test_solver_converges_at_second_order_on_a_manufactured_solution():
    errors = []
    for n in (17, 33, 65):
        a, f, u = _manufactured(n)
        errors.append(np.abs(darcy.solve(a, f) - u).max())
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(1.9 < p < 2.1 for p in orders), (errors, orders)
    assert errors[-1] < 1e-3


def test_operator_is_symmetric_positive_definite_and_boundary_stays_zero():
    rng = np.random.default_rng(1)
    a = darcy.threshold_coefficient(darcy.gaussian_random_field(1, 17, 2.0, 3.0, rng)[0], 3, 12)
    matrix = darcy.assemble(a)
    assert abs(matrix - matrix.T).max() == 0
    smallest = scipy.sparse.linalg.eigsh(matrix, k=1, sigma=0, return_eigenvectors=False)[0]
    assert smallest > 0
    u = darcy.solve(a, 1.0)
    assert np.all(u[0] == 0) and np.all(u[-1] == 0) and np.all(u[:, 0] == 0)
    assert np.all(u[1:-1, 1:-1] > 0)  # maximum principle: f > 0 gives u > 0 inside


def test_solver_rejects_a_non_positive_coefficient():
    a = np.ones((9, 9))
    a[4, 4] = -1.0
    with pytest.raises(DataError, match="non-positive"):
        darcy.solve(a)


RECIPE = """
name: tiny_darcy
equation: darcy
resolutions: [9, 17]
n_samples: 6
seed: 3
"""


def test_recipe_is_reproducible_and_coarse_grid_is_the_fine_solution(tmp_path):
    path = tmp_path / "darcy.yaml"
    path.write_text(RECIPE)
    recipe = load_recipe(path)
    assert isinstance(recipe, DarcyRecipe)
    first = generate(recipe, tmp_path / "a" / "d.nc", progress=False)
    second = generate(recipe, tmp_path / "b" / "d.nc", progress=False)
    for n in (9, 17):
        assert first[n].read_bytes() == second[n].read_bytes()
    coarse, fine = xr.open_dataset(first[9]), xr.open_dataset(first[17])
    assert coarse.pressure.dims == ("sample", "y", "x")
    np.testing.assert_array_equal(coarse.pressure.values, fine.pressure.values[:, ::2, ::2])
    np.testing.assert_array_equal(coarse.permeability.values, fine.permeability.values[:, ::2, ::2])
    assert set(np.unique(fine.permeability.values)) == {3.0, 12.0}
    np.testing.assert_allclose(fine.x.values, np.linspace(0, 1, 17))
    # each stored solution solves its own coefficient's problem
    u = darcy.solve(fine.permeability.values[2].astype(np.float64), 1.0)
    np.testing.assert_allclose(fine.pressure.values[2], u, rtol=1e-6, atol=1e-9)
    assert fine.attrs["source"] == darcy.SOLVER_VERSION


def test_recipe_errors(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(RECIPE.replace("[9, 17]", "[10, 17]"))
    with pytest.raises(ConfigError, match="resolution 10 cannot be sampled"):
        load_recipe(path)
    path.write_text(RECIPE.replace("equation: darcy", "equation: darcey"))
    with pytest.raises(ConfigError, match="equation: one of"):
        load_recipe(path)
