"""Dataset recipes: a YAML file that says how to make a dataset with opflow's solvers.

``opflow generate datasets/navier_stokes_1e-3_64.yaml -o ns.nc`` runs the recipe and writes one
``xarray.Dataset`` per requested resolution. All resolutions come from one solve on the finest
grid (coarser ones are that solution at the coarse grid points), so evaluating a model at
several resolutions compares like with like. A fixed seed makes the output reproducible.

The recipe's ``equation`` picks the kind, one module each: ``navier_stokes``
(:class:`NavierStokesRecipe`, periodic grids of ``n`` points), ``darcy`` (:class:`DarcyRecipe`,
grids of ``n`` points including both boundaries) or ``shallow_water``
(:class:`ShallowWaterRecipe`, sphere grids of ``[nlat, nlon]`` points). A new kind registers
itself with :func:`~opflow.data.recipes.registry.register_recipe`.
"""

from __future__ import annotations

from collections.abc import Hashable
from pathlib import Path

from opflow.data.io import check_writable
from opflow.data.recipes.darcy import DarcyRecipe
from opflow.data.recipes.navier_stokes import NavierStokesRecipe
from opflow.data.recipes.registry import output_paths, recipe_classes
from opflow.data.recipes.shallow_water import ShallowWaterRecipe
from opflow.errors import ConfigError
from opflow.schema import from_dict, load_yaml

__all__ = [
    "NavierStokesRecipe",
    "DarcyRecipe",
    "ShallowWaterRecipe",
    "Recipe",
    "load_recipe",
    "generate",
    "output_paths",
]

Recipe = NavierStokesRecipe | DarcyRecipe | ShallowWaterRecipe


def load_recipe(path: str | Path) -> Recipe:
    """Read a recipe; its ``equation`` key picks the recipe class."""
    data = load_yaml(path)
    equation = data.get("equation") if isinstance(data, dict) else None
    classes = recipe_classes()
    if equation not in classes:
        raise ConfigError(
            f"{path}: recipe equation {equation!r}",
            f"equation: one of {sorted(classes)}",
            "set the recipe's equation key",
        )
    return from_dict(classes[equation], data, where=Path(path).stem)


def generate(
    recipe: Recipe, output: str | Path, progress: bool | None = None
) -> dict[Hashable, Path]:
    """Run ``recipe`` and write its datasets; returns ``{grid key: path}`` (keys ``n``, or
    ``(nlat, nlon)`` on the sphere)."""
    paths = output_paths(recipe, output)
    for directory in {path.parent for path in paths.values()}:  # before the solve, not after
        check_writable(directory, "dataset", "pass -o with a path in a writable directory")
    recipe.write(paths, progress)
    return paths
