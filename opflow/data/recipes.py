"""Dataset recipes: a YAML file that says how to make a dataset with opflow's solvers.

``opflow generate datasets/navier_stokes_1e-3_64.yaml -o ns.nc`` runs the recipe and writes one
``xarray.Dataset`` per requested resolution. All resolutions come from one solve on the finest
grid (coarser ones are that solution at the coarse grid points), so evaluating a model at
several resolutions compares like with like. A fixed seed makes the output reproducible.

The recipe's ``equation`` picks the kind: ``navier_stokes`` (:class:`NavierStokesRecipe`,
periodic grids of ``n`` points), ``darcy`` (:class:`DarcyRecipe`, grids of ``n`` points
including both boundaries) or ``shallow_water`` (:class:`ShallowWaterRecipe`, sphere grids of
``[nlat, nlon]`` points).
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr
import yaml
from tqdm.auto import tqdm

import opflow
from opflow.data.io import write_dataset
from opflow.errors import ConfigError
from opflow.schema import from_dict, load_yaml, to_dict
from opflow.solvers import darcy, navier_stokes, shallow_water
from opflow.spectral.sphere import GRID_KINDS, SphereGrid

__all__ = [
    "NavierStokesRecipe",
    "DarcyRecipe",
    "ShallowWaterRecipe",
    "Recipe",
    "load_recipe",
    "generate",
    "output_paths",
]


@dataclasses.dataclass
class NavierStokesRecipe:
    """Vorticity trajectories of 2-D Navier–Stokes on the unit torus (FNO's setting)."""

    name: str
    equation: Literal["navier_stokes"]
    viscosity: float
    resolutions: list[int]
    n_samples: int
    record_interval: float = 1.0
    n_records: int = 10
    grf_alpha: float = 2.5
    grf_tau: float = 7.0
    forcing: Literal["fno", "none"] = "fno"
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float64"
    batch_size: int = 64
    cfl: float = 0.5
    description: str = ""

    def validate(self) -> None:
        finest = max(self.resolutions)
        for n in self.resolutions:
            if n < 8 or n % 2 or finest % n:
                raise ConfigError(
                    f"{self.name}: resolution {n} cannot be sampled from the finest grid {finest}",
                    "even resolutions >= 8 that each divide the finest one",
                    "use e.g. [64, 128, 256]",
                )
        if self.n_samples < 1 or self.batch_size < 1 or self.n_records < 1:
            raise ConfigError(
                f"{self.name}: n_samples, batch_size and n_records must be positive",
                "positive integers",
                "fix the recipe",
            )


@dataclasses.dataclass
class DarcyRecipe:
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


@dataclasses.dataclass
class ShallowWaterRecipe:
    """Shallow-water trajectories on the rotating sphere (SFNO's setting, torch-harmonics' solver).

    Solved on the finest of ``resolutions`` (``[nlat, nlon]`` pairs, grids of kind ``grid``) from
    random initial states at Mach ``mach``, recorded every ``record_hours`` hours; every
    resolution stores the same band-limited solution sampled on its grid. Sample ``i`` starts
    from seed ``seed * 100000 + i``, so a sample does not depend on which worker made it.
    ``workers``: processes (0 = one per core).
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


Recipe = NavierStokesRecipe | DarcyRecipe | ShallowWaterRecipe
_RECIPES = {
    "navier_stokes": NavierStokesRecipe,
    "darcy": DarcyRecipe,
    "shallow_water": ShallowWaterRecipe,
}


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe; its ``equation`` key picks the recipe class."""
    data = load_yaml(path)
    equation = data.get("equation") if isinstance(data, dict) else None
    if equation not in _RECIPES:
        raise ConfigError(
            f"{path}: recipe equation {equation!r}",
            f"equation: one of {sorted(_RECIPES)}",
            "set the recipe's equation key",
        )
    return from_dict(_RECIPES[equation], data, where=Path(path).stem)


def output_paths(recipe: Recipe, output: str | Path) -> dict:
    """One path per resolution: ``output`` itself for one, ``stem_<n>.suffix`` for several
    (keys ``n``; on the sphere ``(nlat, nlon)`` and ``stem_<nlat>x<nlon>.suffix``)."""
    output = Path(output)
    if isinstance(recipe, ShallowWaterRecipe):
        grids = [g.shape for g in recipe.grids]
        if len(grids) == 1:
            return {grids[0]: output}
        return {g: output.with_name(f"{output.stem}_{g[0]}x{g[1]}{output.suffix}") for g in grids}
    resolutions = sorted(set(recipe.resolutions))
    if len(resolutions) == 1:
        return {resolutions[0]: output}
    return {n: output.with_name(f"{output.stem}_{n}{output.suffix}") for n in resolutions}


def _dataset(recipe: NavierStokesRecipe, vorticity: np.ndarray, forcing: np.ndarray) -> xr.Dataset:
    n = vorticity.shape[-1]
    coords = np.arange(n) / n
    times = recipe.record_interval * np.arange(recipe.n_records + 1)
    ds = xr.Dataset(
        {
            "vorticity": (
                ("sample", "time", "y", "x"),
                vorticity,
                {"units": "1", "long_name": "vorticity (nondimensional)"},
            ),
            "forcing": (("y", "x"), forcing, {"units": "1", "long_name": "forcing term f"}),
        },
        coords={
            "sample": ("sample", np.arange(vorticity.shape[0]), {"long_name": "sample index"}),
            "time": ("time", times, {"units": "1", "long_name": "time (nondimensional)"}),
            "y": ("y", coords, {"units": "1", "long_name": "y coordinate on the unit torus"}),
            "x": ("x", coords, {"units": "1", "long_name": "x coordinate on the unit torus"}),
        },
        attrs={
            "title": f"{recipe.name}: 2-D Navier–Stokes vorticity, viscosity {recipe.viscosity}",
            "Conventions": "CF-1.8",
            "source": navier_stokes.SOLVER_VERSION,
            "opflow_version": opflow.__version__,
            "viscosity": recipe.viscosity,
            "domain": "periodic unit torus [0, 1)^2",
            "solved_at_resolution": max(recipe.resolutions),
            "recipe": yaml.safe_dump(to_dict(recipe), sort_keys=True),
        },
    )
    return ds


def generate(recipe: Recipe, output: str | Path, progress: bool = True) -> dict[int, Path]:
    """Run ``recipe`` and write its datasets; returns ``{resolution: path}``."""
    if isinstance(recipe, DarcyRecipe):
        return _generate_darcy(recipe, output, progress)
    if isinstance(recipe, ShallowWaterRecipe):
        return _generate_shallow_water(recipe, output, progress)
    return _generate_navier_stokes(recipe, output, progress)


def _generate_navier_stokes(
    recipe: NavierStokesRecipe, output: str | Path, progress: bool
) -> dict[int, Path]:
    dtype = torch.float64 if recipe.dtype == "float64" else torch.float32
    finest = max(recipe.resolutions)
    generator = torch.Generator().manual_seed(recipe.seed)
    forcing = navier_stokes.default_forcing(finest, dtype) if recipe.forcing == "fno" else None
    fields = np.empty(
        (recipe.n_samples, recipe.n_records + 1, finest, finest), dtype=np.dtype(recipe.dtype)
    )
    total = recipe.n_records * ((recipe.n_samples + recipe.batch_size - 1) // recipe.batch_size)
    with tqdm(total=total, desc=f"{recipe.name} @ {finest}²", disable=not progress) as bar:
        for start in range(0, recipe.n_samples, recipe.batch_size):
            count = min(recipe.batch_size, recipe.n_samples - start)
            w0 = navier_stokes.gaussian_random_field(
                count, finest, recipe.grf_alpha, recipe.grf_tau, generator, dtype
            )
            records = navier_stokes.solve(
                w0,
                recipe.viscosity,
                recipe.record_interval,
                recipe.n_records,
                forcing=forcing,
                cfl=recipe.cfl,
                progress=lambda _: bar.update(1),
            )
            fields[start : start + count, 0] = w0.numpy()
            fields[start : start + count, 1:] = records.numpy()
    forcing_np = (forcing if forcing is not None else torch.zeros(finest, finest)).numpy()
    paths = output_paths(recipe, output)
    for n, path in paths.items():
        step = finest // n
        sub = np.ascontiguousarray(fields[..., ::step, ::step])
        ds = _dataset(recipe, sub, forcing_np[::step, ::step].astype(sub.dtype))
        write_dataset(ds, path)
    return paths


def _darcy_dataset(
    recipe: DarcyRecipe, coefficient: np.ndarray, solution: np.ndarray
) -> xr.Dataset:
    nodes = np.linspace(0.0, 1.0, coefficient.shape[-1])
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
        attrs={
            "title": f"{recipe.name}: 2-D Darcy flow, a in {{{recipe.a_low}, {recipe.a_high}}}, "
            f"f = {recipe.forcing}",
            "Conventions": "CF-1.8",
            "source": darcy.SOLVER_VERSION,
            "opflow_version": opflow.__version__,
            "domain": "unit square [0, 1]^2, u = 0 on the boundary",
            "forcing": recipe.forcing,
            "solved_at_resolution": max(recipe.resolutions),
            "recipe": yaml.safe_dump(to_dict(recipe), sort_keys=True),
        },
    )


def _generate_darcy(recipe: DarcyRecipe, output: str | Path, progress: bool) -> dict[int, Path]:
    finest = max(recipe.resolutions)
    rng = np.random.default_rng(recipe.seed)
    field = darcy.gaussian_random_field(
        recipe.n_samples, finest, recipe.grf_alpha, recipe.grf_tau, rng
    )
    coefficient = darcy.threshold_coefficient(field, recipe.a_low, recipe.a_high)
    solution = np.empty_like(coefficient)
    for i in tqdm(range(recipe.n_samples), desc=f"{recipe.name} @ {finest}²", disable=not progress):
        solution[i] = darcy.solve(coefficient[i], recipe.forcing)
    paths = output_paths(recipe, output)
    dtype = np.dtype(recipe.dtype)
    for n, path in paths.items():
        step = (finest - 1) // (n - 1)
        sub = (slice(None), slice(None, None, step), slice(None, None, step))
        ds = _darcy_dataset(
            recipe,
            np.ascontiguousarray(coefficient[sub], dtype=dtype),
            np.ascontiguousarray(solution[sub], dtype=dtype),
        )
        write_dataset(ds, path)
    return paths


def _shallow_water_sample(recipe: ShallowWaterRecipe, index: int) -> list[np.ndarray]:
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
    )
    return [f.numpy().astype(recipe.dtype) for f in fields]


def _shallow_water_dataset(recipe: ShallowWaterRecipe, grid: SphereGrid, fields: np.ndarray):
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
        attrs={
            "title": f"{recipe.name}: shallow-water equations on the rotating sphere",
            "Conventions": "CF-1.8",
            "source": shallow_water.SOLVER_VERSION,
            "opflow_version": opflow.__version__,
            "sphere_grid": grid.kind,
            "solved_at_resolution": f"{recipe.grids[-1].nlat}x{recipe.grids[-1].nlon}",
            "recipe": yaml.safe_dump(to_dict(recipe), sort_keys=True),
        },
    )


def _generate_shallow_water(
    recipe: ShallowWaterRecipe, output: str | Path, progress: bool
) -> dict[tuple[int, int], Path]:
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
        disable=not progress,
    )
    indices = range(recipe.n_samples)
    with bar:
        if workers == 1:
            samples = (_shallow_water_sample(recipe, i) for i in indices)
            for i, sample in enumerate(samples):
                for store, values in zip(fields, sample):
                    store[i] = values
                bar.update(1)
        else:
            # spawn: a forked child would inherit torch's thread pools in an undefined state
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(workers, mp_context=context) as pool:
                samples = pool.map(_shallow_water_sample, [recipe] * len(indices), indices)
                for i, sample in enumerate(samples):
                    for store, values in zip(fields, sample):
                        store[i] = values
                    bar.update(1)
    paths = output_paths(recipe, output)
    for grid, values in zip(grids, fields):
        write_dataset(_shallow_water_dataset(recipe, grid, values), paths[grid.shape])
    return paths
