"""Steady Darcy flow on the unit square (FNO's benchmark data)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from opflow.data.io import write_dataset
from opflow.data.recipes.registry import PlanarGrids, dataset_attrs, register_recipe
from opflow.errors import ConfigError
from opflow.solvers import darcy

__all__ = ["DarcyRecipe"]


@register_recipe("darcy")
@dataclasses.dataclass
class DarcyRecipe(PlanarGrids):
    """Steady Darcy flow ``-div(a grad u) = f`` on the unit square, ``u = 0`` on the boundary.

    FNO's benchmark: ``a = a_high`` where a Gaussian random field ``N(0, (-Δ + τ²)^(-α))`` is
    >= 0, ``a_low`` elsewhere; constant ``f``. Grids have ``n`` points per axis including both
    boundaries, so every resolution ``n`` must satisfy ``(finest - 1) % (n - 1) == 0``
    (e.g. 33, 65, 129).
    """

    name: str
    equation: Literal["darcy"]
    resolutions: list[int]
    n_samples: int
    grf_alpha: float = 2.0
    grf_tau: float = 3.0
    a_low: float = 3.0
    a_high: float = 12.0
    forcing: float = 1.0
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    description: str = ""

    def validate(self) -> None:
        finest = max(self.resolutions)
        for n in self.resolutions:
            if n < 5 or (finest - 1) % (n - 1):
                raise ConfigError(
                    f"{self.name}: resolution {n} cannot be sampled from the finest grid {finest}",
                    "resolutions n >= 5 with (finest - 1) divisible by (n - 1)",
                    "use e.g. [33, 65, 129]",
                )
        if self.n_samples < 1 or not (0 < self.a_low and 0 < self.a_high):
            raise ConfigError(
                f"{self.name}: n_samples={self.n_samples}, a_low={self.a_low}, "
                f"a_high={self.a_high}",
                "a positive sample count and positive coefficients",
                "fix the recipe",
            )

    def write(self, paths: dict[int, Path], progress: bool | None) -> None:
        _write(self, paths, progress)


def _dataset(recipe: DarcyRecipe, coefficient: np.ndarray, solution: np.ndarray) -> xr.Dataset:
    n, finest = coefficient.shape[-1], max(recipe.resolutions)
    nodes = np.linspace(0.0, 1.0, n)
    return xr.Dataset(
        {
            "permeability": (
                ("sample", "y", "x"),
                coefficient,
                {"units": "1", "long_name": "diffusion coefficient a(x) (permeability)"},
            ),
            "pressure": (
                ("sample", "y", "x"),
                solution,
                {"units": "1", "long_name": "solution u(x) of -div(a grad u) = f (pressure)"},
            ),
        },
        coords={
            "sample": ("sample", np.arange(coefficient.shape[0]), {"long_name": "sample index"}),
            "y": ("y", nodes, {"units": "1", "long_name": "y coordinate, boundaries included"}),
            "x": ("x", nodes, {"units": "1", "long_name": "x coordinate, boundaries included"}),
        },
        attrs=dataset_attrs(
            recipe,
            f"2-D Darcy flow, a in {{{recipe.a_low}, {recipe.a_high}}}, f = {recipe.forcing}",
            darcy.SOLVER_VERSION,
            domain="unit square [0, 1]^2, u = 0 on the boundary",
            forcing=recipe.forcing,
            solved_at_resolution=max(recipe.resolutions),
            storage=(
                f"the {finest}x{finest} solution itself"
                if n == finest
                else f"subsampled: every {(finest - 1) // (n - 1)}th node of the {finest}x{finest}"
                " solution and coefficient (both boundaries kept)"
            ),
        ),
    )


def _write(recipe: DarcyRecipe, paths: dict[int, Path], progress: bool | None) -> None:
    finest = max(recipe.resolutions)
    rng = np.random.default_rng(recipe.seed)
    field = darcy.gaussian_random_field(
        recipe.n_samples, finest, recipe.grf_alpha, recipe.grf_tau, rng
    )
    coefficient = darcy.threshold_coefficient(field, recipe.a_low, recipe.a_high)
    solution = np.empty_like(coefficient)
    for i in tqdm(
        range(recipe.n_samples),
        desc=f"{recipe.name} @ {finest}²",
        disable=None if progress is None else not progress,
    ):
        solution[i] = darcy.solve(coefficient[i], recipe.forcing)
    dtype = np.dtype(recipe.dtype)
    for n, path in paths.items():
        step = (finest - 1) // (n - 1)
        sub = (slice(None), slice(None, None, step), slice(None, None, step))
        ds = _dataset(
            recipe,
            np.ascontiguousarray(coefficient[sub], dtype=dtype),
            np.ascontiguousarray(solution[sub], dtype=dtype),
        )
        write_dataset(ds, path)
