"""The recipe registry and what every recipe shares: the files it writes and their metadata."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

import yaml

import opflow
from opflow.schema import to_dict

__all__ = ["PlanarGrids", "register_recipe", "recipe_classes", "output_paths", "dataset_attrs"]

_RECIPES: dict[str, type] = {}


def register_recipe(equation: str) -> Callable[[type], type]:
    """Class decorator: a recipe dataclass for ``equation: <equation>`` in a recipe file.

    A recipe class provides ``validate()``, ``grid_keys()`` (one key per stored grid, coarsest
    first), ``grid_label(key)`` (the key in file names) and ``write(paths, progress)``
    (solve once and write ``{key: path}``).
    """

    def decorate(cls: type) -> type:
        _RECIPES[equation] = cls
        return cls

    return decorate


class PlanarGrids:
    """Grid keys of a recipe whose ``resolutions`` are point counts per axis (square grids)."""

    resolutions: list[int]

    def grid_keys(self) -> list[int]:
        return sorted(set(self.resolutions))

    def grid_label(self, key: int) -> str:
        return str(key)


def recipe_classes() -> dict[str, type]:
    return dict(_RECIPES)


def output_paths(recipe: Any, output: str | Path) -> dict[Hashable, Path]:
    """One path per stored grid: ``output`` itself for one, ``stem_<label>.suffix`` for several
    (labels ``n``, or ``<nlat>x<nlon>`` on the sphere)."""
    output = Path(output)
    keys = recipe.grid_keys()
    if len(keys) == 1:
        return {keys[0]: output}
    return {
        key: output.with_name(f"{output.stem}_{recipe.grid_label(key)}{output.suffix}")
        for key in keys
    }


def dataset_attrs(recipe: Any, title: str, source: str, **extra) -> dict:
    """CF-style global attributes of a recipe's dataset: what made it and from which recipe."""
    return {
        "title": f"{recipe.name}: {title}",
        "Conventions": "CF-1.8",
        "source": source,
        "opflow_version": opflow.__version__,
        **extra,
        "recipe": yaml.safe_dump(to_dict(recipe), sort_keys=True),
    }
