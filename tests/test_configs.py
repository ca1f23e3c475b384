"""Every shipped config and recipe loads, and every config's model builds and runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from opflow.data.recipes import load_recipe
from opflow.models import build_model
from opflow.train import load_config

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_config_loads_and_its_model_runs(path):
    config = load_config(path)
    n_in = len(config.data.input_variables) * config.data.t_in
    n_out = len(config.data.outputs) * config.data.t_out
    args = {"in_channels": n_in, "out_channels": n_out} | config.model.args
    model = build_model(config.model.name, **args)
    grid = 65 if not config.data.periodic else 64
    out = model(torch.randn(2, n_in, grid, grid))
    assert out.shape == (2, n_out, grid, grid) and torch.isfinite(out).all()


@pytest.mark.parametrize("path", sorted((ROOT / "datasets").glob("*.yaml")), ids=lambda p: p.name)
def test_recipe_loads(path):
    recipe = load_recipe(path)
    assert recipe.n_samples > 0 and recipe.resolutions
