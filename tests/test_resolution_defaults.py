"""Resolution across grids (issue #27): every registered model for planar data, trained from a
config with default arguments, keeps its test error within 1.2x at twice the training grid
(Navier–Stokes ν = 1e-3, 32² -> 64², one 64² solve stored at both grids); and multi-resolution
training (``data.path`` listing both files).

The spherical models are held to the same on shallow water in test_shallow_water.py (1.02x at
65x128 after training at 33x64). MgNO is the exception the README names: its multigrid
stencils are defined on grid points, so a finer grid changes the operator.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from opflow.data import FieldData
from opflow.data.recipes import generate, load_recipe
from opflow.data.windows import MultiGridDataset
from opflow.errors import ShapeError
from opflow.evaluate import evaluate_run
from opflow.norms import relative_lp_per_sample
from opflow.run.spec import Task, build_task_model, load_trained
from opflow.train import train
from opflow.train.config import config_from_dict

RECIPE = """\
name: consistency_ns
equation: navier_stokes
viscosity: 1.0e-3
resolutions: [32, 64]
n_samples: 40
n_records: 6
record_interval: 1.0
seed: 5
dtype: float32
batch_size: 24
"""

# the defaults, with only the sizes small: what a user who names the model gets
MODELS = {
    "FNO": {"n_modes": [8, 8], "hidden_channels": 12, "n_layers": 2},
    "LocalNO": {"n_modes": [8, 8], "hidden_channels": 12, "n_layers": 2},
    "SpecBoost": {
        "stages": [
            {"name": "FNO", "args": {"n_modes": [8, 8], "hidden_channels": 12, "n_layers": 2}},
            {"name": "FNO", "args": {"n_modes": [16, 16], "hidden_channels": 12, "n_layers": 2}},
        ]
    },
}


EPOCHS = 20


@pytest.fixture(scope="module")
def multires_files(tmp_path_factory) -> dict[int, Path]:
    folder = tmp_path_factory.mktemp("ns")
    (folder / "recipe.yaml").write_text(RECIPE)
    return generate(load_recipe(folder / "recipe.yaml"), folder / "ns.nc", progress=False)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_default_model_keeps_its_error_at_twice_the_training_grid(name, multires_files, tmp_path):
    config = config_from_dict(
        {
            "data": {
                "path": str(multires_files[32]),
                "input_variables": ["vorticity"],
                "time_start": 1,
                "split": {"train": 32, "val": 4, "test": 4},
            },
            "model": {"name": name, "args": MODELS[name]},
            "optimizer": {"lr": 1.0e-2},
            "training": {
                "epochs": EPOCHS,
                "batch_size": 8,
                "seed": 0,
                "threads": 1,
                "output_dir": str(tmp_path / "run"),
            },
        }
    )
    run = train(config, progress=False)
    coarse, fine = evaluate_run(
        run, [multires_files[32], multires_files[64]], out_dir=tmp_path / "eval"
    )
    assert fine.grid == [64, 64]
    # learned something: a fraction of persistence's error on the same test pairs
    data = FieldData(config.data)
    x, y = data.dataset("test").batch(range(len(data.dataset("test"))))
    persistence = relative_lp_per_sample(x, y).mean().item()
    assert coarse.rel_l2 < 0.5 * persistence, (coarse.rel_l2, persistence)
    # measured 0.999x for each (MgNO, not held to it: 5.1x, 0.060 -> 0.30)
    assert fine.rel_l2 < 1.2 * coarse.rel_l2, (coarse.rel_l2, fine.rel_l2)
    if name == "LocalNO":  # its stencils stay the training grid's on every grid
        model = load_trained(run).model
        grids = {block.local.reference_grid for block in model.blocks}
        assert grids == {(32, 32)}, grids


def test_the_training_grid_is_filled_in_only_where_the_config_is_silent():
    task = Task(["vorticity"], ["vorticity"])
    args = {"n_modes": [8, 8], "hidden_channels": 4, "n_layers": 1}

    def reference(extra: dict):
        model = build_task_model("LocalNO", args | extra, task, grid=[32, 32])
        return {block.local.reference_grid for block in model.blocks}

    assert reference({}) == {(32, 32)}
    assert reference({"local_grid": None}) == {None}  # the paper's per-grid stencils, asked for
    assert reference({"boundary": "zero"}) == {None}  # a reference grid needs periodic axes
    assert reference({"local_grid": [64, 64]}) == {(64, 64)}


def test_multi_resolution_training_draws_each_batch_from_one_grid(multires_files, tmp_path):
    """``data.path`` lists the 32² and 64² files: every item of both is in exactly one batch
    of an epoch, each batch from one grid; the run trains, records the first grid, and is
    evaluated on both by default."""
    raw = {
        "data": {
            "path": [str(multires_files[32]), str(multires_files[64])],
            "input_variables": ["vorticity"],
            "time_start": 1,
            "split": {"train": 32, "val": 4, "test": 4},
        },
        "model": {"name": "FNO", "args": MODELS["FNO"]},
        "optimizer": {"lr": 1.0e-2},
        "training": {
            "epochs": EPOCHS // 2,
            "batch_size": 8,
            "threads": 1,
            "output_dir": str(tmp_path / "run"),
        },
    }
    config = config_from_dict(raw)
    pairs = MultiGridDataset(
        [FieldData(config.data, p).dataset("train") for p in config.data.paths]
    )
    n = len(pairs.parts[0])
    assert len(pairs) == 2 * n
    batches = pairs.batches(8, torch.Generator().manual_seed(0))
    assert sorted(torch.cat(batches).tolist()) == list(range(2 * n))
    assert all(bool((b < n).all()) or bool((b >= n).all()) for b in batches)
    shapes = {tuple(pairs.batch(b)[0].shape[2:]) for b in batches}
    assert shapes == {(32, 32), (64, 64)}
    with pytest.raises(ShapeError, match="several grids"):
        pairs.batch([0, n])

    run = train(config, progress=False)
    assert load_trained(run).grid.sizes == [32, 32]  # the first file's grid
    coarse, fine = evaluate_run(run, [], out_dir=tmp_path / "eval")  # the run's own files
    assert (coarse.grid, fine.grid) == ([32, 32], [64, 64])
    data = FieldData(config.data, multires_files[64])
    x, y = data.dataset("test").batch(range(len(data.dataset("test"))))
    persistence = relative_lp_per_sample(x, y).mean().item()
    assert fine.rel_l2 < 0.5 * persistence, (fine.rel_l2, persistence)
