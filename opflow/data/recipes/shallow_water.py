"""Shallow-water trajectories on the rotating sphere (SFNO's setting, torch-harmonics' solver)."""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from opflow.data.io import write_dataset
from opflow.data.recipes.registry import dataset_attrs, register_recipe
from opflow.errors import ConfigError
from opflow.solvers import shallow_water
from opflow.spectral.sphere import GRID_KINDS, SphereGrid

__all__ = ["ShallowWaterRecipe"]


@register_recipe("shallow_water")
@dataclasses.dataclass
class ShallowWaterRecipe:
    """Shallow-water trajectories on the rotating sphere (SFNO's setting, torch-harmonics' solver).

    Solved on the finest of ``resolutions`` (``[nlat, nlon]`` pairs, grids of kind ``grid``) from
    random initial states at Mach ``mach``, recorded every ``record_hours`` hours; every
    resolution stores the same band-limited solution sampled on its grid. Sample ``i`` starts
    from seed ``seed * 100000 + i``, so a sample does not depend on which worker made it.
    ``workers``: processes (0 = one per core). ``storage``: ``exact`` (every grid holds the
    whole band-limited solution, so each grid must resolve its orders) or ``truncate`` (each
    grid holds the solution truncated to the degrees it resolves: finer grids carry detail the
    coarse ones lack, for super-resolution tests).
    """

    name: str
    equation: Literal["shallow_water"]
    resolutions: list[list[int]]
    n_samples: int
    grid: str = "equiangular"
    record_hours: float = 1.0
    n_records: int = 6
    steps_per_hour: int = 24
    mach: float = 0.2
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"
    workers: int = 0
    storage: Literal["exact", "truncate"] = "exact"
    description: str = ""

    def validate(self) -> None:
        pairs_ok = all(isinstance(r, list) and len(r) == 2 for r in self.resolutions)
        if not self.resolutions or not pairs_ok:
            raise ConfigError(
                f"{self.name}: resolutions={self.resolutions}",
                "a list of [nlat, nlon] pairs, e.g. [[33, 64], [65, 128]]",
                "give each grid as [nlat, nlon]",
            )
        if self.grid not in GRID_KINDS:
            raise ConfigError(
                f"{self.name}: grid={self.grid!r}",
                f"one of {list(GRID_KINDS)}",
                "fix the recipe's grid",
            )
        if self.grid == "equiangular-no-poles":
            raise ConfigError(
                f"{self.name}: torch-harmonics' solver has no {self.grid!r} grid",
                "equiangular, legendre-gauss or lobatto",
                "solve on one of those",
            )
        if min(self.n_samples, self.n_records, self.steps_per_hour) < 1 or self.workers < 0:
            raise ConfigError(
                f"{self.name}: n_samples, n_records, steps_per_hour must be positive, workers >= 0",
                "positive integers",
                "fix the recipe",
            )
        for nlat, nlon in self.resolutions:
            SphereGrid(nlat, nlon, self.grid)  # raises on a grid too small for its kind

    @property
    def grids(self) -> list[SphereGrid]:
        """The stored grids, coarsest first."""
        return sorted(
            (SphereGrid(int(a), int(b), self.grid) for a, b in self.resolutions),
            key=lambda g: (g.nlat, g.nlon),
        )

    def grid_keys(self) -> list[tuple[int, int]]:
        return [g.shape for g in self.grids]

    def grid_label(self, key: tuple[int, int]) -> str:
        return f"{key[0]}x{key[1]}"

    def write(self, paths: dict[tuple[int, int], Path], progress: bool | None) -> None:
        _write(self, paths, progress)


def _sample(recipe: ShallowWaterRecipe, index: int) -> list[np.ndarray]:
    torch.set_num_threads(1)  # one process per core does the parallel work
    grids = recipe.grids
    fields = shallow_water.solve_sample(
        recipe.seed * 100_000 + index,
        grids[-1],
        grids,
        recipe.record_hours,
        recipe.n_records,
        recipe.steps_per_hour,
        recipe.mach,
        recipe.storage == "truncate",
    )
    return [f.numpy().astype(recipe.dtype) for f in fields]


def _dataset(recipe: ShallowWaterRecipe, grid: SphereGrid, fields: np.ndarray):
    """``fields`` ``(sample, time, variable, lat, lon)`` -> CF-style dataset."""
    dims = ("sample", "time", "lat", "lon")
    data_vars = {
        name: (dims, fields[:, :, i], {"units": units, "long_name": long_name})
        for i, (name, (units, long_name)) in enumerate(shallow_water.VARIABLES.items())
    }
    hours = recipe.record_hours * np.arange(recipe.n_records + 1)
    return xr.Dataset(
        data_vars,
        coords={
            "sample": ("sample", np.arange(fields.shape[0]), {"long_name": "sample index"}),
            "time": ("time", hours, {"units": "hours", "long_name": "time since initial state"}),
            "lat": (
                "lat",
                grid.latitudes_deg.numpy(),
                {"units": "degrees_north", "standard_name": "latitude"},
            ),
            "lon": (
                "lon",
                grid.longitudes_deg.numpy(),
                {"units": "degrees_east", "standard_name": "longitude"},
            ),
        },
        attrs=dataset_attrs(
            recipe,
            "shallow-water equations on the rotating sphere",
            shallow_water.SOLVER_VERSION,
            sphere_grid=grid.kind,
            solved_at_resolution=f"{recipe.grids[-1].nlat}x{recipe.grids[-1].nlon}",
            storage=_storage(recipe, grid),
        ),
    )


def _storage(recipe: ShallowWaterRecipe, grid: SphereGrid) -> str:
    """The storage rule of a grid, for the file's attrs and the dataset card."""
    solved = math.ceil(recipe.grids[-1].nlat / 3)  # the solver's degrees (solvers.shallow_water)
    if recipe.storage == "truncate" and grid.max_degree < solved:
        return (
            f"spectral truncation: the solution's degrees l < {grid.max_degree} (of its l < "
            f"{solved}) synthesised on this grid; the finer grids hold the rest"
        )
    if recipe.storage == "truncate":
        return (
            f"the solver's band-limited state (degrees l < {solved}) synthesised on this grid; "
            "coarser stored grids hold its truncations"
        )
    return (
        f"the solver's band-limited state (degrees l < {solved}) synthesised on this grid: the "
        "same field as every other stored grid"
    )


def _write(
    recipe: ShallowWaterRecipe, paths: dict[tuple[int, int], Path], progress: bool | None
) -> None:
    grids = recipe.grids
    fields = [
        np.empty((recipe.n_samples, recipe.n_records + 1, 3, *g.shape), dtype=recipe.dtype)
        for g in grids
    ]
    workers = min(recipe.workers or os.cpu_count() or 1, recipe.n_samples)
    finest = grids[-1]
    bar = tqdm(
        total=recipe.n_samples,
        desc=f"{recipe.name} @ {finest.nlat}x{finest.nlon}",
        disable=None if progress is None else not progress,
    )
    indices = range(recipe.n_samples)
    with bar:
        if workers == 1:
            samples = (_sample(recipe, i) for i in indices)
            for i, sample in enumerate(samples):
                for store, values in zip(fields, sample):
                    store[i] = values
                bar.update(1)
        else:
            # spawn: a forked child would inherit torch's thread pools in an undefined state
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                samples = pool.map(_sample, [recipe] * len(indices), indices)
                for i, sample in enumerate(samples):
                    for store, values in zip(fields, sample):
                        store[i] = values
                    bar.update(1)
    for grid, values in zip(grids, fields):
        write_dataset(_dataset(recipe, grid, values), paths[grid.shape])
