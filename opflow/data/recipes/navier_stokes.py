"""Navier–Stokes vorticity trajectories on the unit torus (FNO's benchmark data)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from opflow.data.io import write_dataset
from opflow.data.recipes.registry import PlanarGrids, dataset_attrs, register_recipe
from opflow.errors import ConfigError
from opflow.solvers import navier_stokes

__all__ = ["NavierStokesRecipe"]


@register_recipe("navier_stokes")
@dataclasses.dataclass
class NavierStokesRecipe(PlanarGrids):
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

    def write(self, paths: dict[int, Path], progress: bool | None) -> None:
        _write(self, paths, progress)


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
        attrs=dataset_attrs(
            recipe,
            f"2-D Navier–Stokes vorticity, viscosity {recipe.viscosity}",
            navier_stokes.SOLVER_VERSION,
            viscosity=recipe.viscosity,
            domain="periodic unit torus [0, 1)^2",
            solved_at_resolution=max(recipe.resolutions),
            storage=_storage(n, max(recipe.resolutions)),
        ),
    )
    return ds


def _storage(n: int, finest: int) -> str:
    """The storage rule of a grid, for the file's attrs and the dataset card."""
    if n == finest:
        return f"the {finest}x{finest} solution itself"
    return (
        f"subsampled: every {finest // n}th point of the {finest}x{finest} solution (point "
        f"values; content above this grid's Nyquist wavenumber {n // 2} aliases onto it)"
    )


def _write(recipe: NavierStokesRecipe, paths: dict[int, Path], progress: bool | None) -> None:
    dtype = torch.float64 if recipe.dtype == "float64" else torch.float32
    finest = max(recipe.resolutions)
    generator = torch.Generator().manual_seed(recipe.seed)
    forcing = navier_stokes.default_forcing(finest, dtype) if recipe.forcing == "fno" else None
    fields = np.empty(
        (recipe.n_samples, recipe.n_records + 1, finest, finest), dtype=np.dtype(recipe.dtype)
    )
    total = recipe.n_records * ((recipe.n_samples + recipe.batch_size - 1) // recipe.batch_size)
    with tqdm(
        total=total,
        desc=f"{recipe.name} @ {finest}²",
        disable=None if progress is None else not progress,
    ) as bar:
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
    for n, path in paths.items():
        step = finest // n
        sub = np.ascontiguousarray(fields[..., ::step, ::step])
        ds = _dataset(recipe, sub, forcing_np[::step, ::step].astype(sub.dtype))
        write_dataset(ds, path)
