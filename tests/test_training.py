"""Config training end to end: learning, exact resume after SIGKILL, checkpoints, config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
import xarray as xr
from conftest import last_weights, ns_training_config, write_yaml

import opflow
from opflow.errors import CheckpointError, ConfigError
from opflow.train import load_config, train


def test_training_learns_and_writes_the_run(ns_files, tmp_path):
    cfg = write_yaml(
        tmp_path / "cfg.yaml", ns_training_config(ns_files[32], tmp_path / "run", epochs=12)
    )
    run = train(load_config(cfg), progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(12))
    assert rows[-1]["train_loss"] < 0.5 * rows[0]["train_loss"]
    assert rows[-1]["val_rel_l2"] < rows[0]["val_rel_l2"]
    for name in ("config.yaml", "checkpoints/last.json", "checkpoints/best.json"):
        assert (run / name).is_file()
    # weights are safetensors, readable without pickle
    pointer = json.loads((run / "checkpoints/last.json").read_text())
    tensors = safetensors.torch.load_file(run / "checkpoints" / pointer["file"])
    assert any(k.startswith("model.blocks.0.conv.weight") for k in tensors)
    with pytest.raises(ConfigError, match="already holds a trained run"):
        train(load_config(cfg), progress=False)


def _cli(*args: str, **kw) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "opflow.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        **kw,
    )


def test_resume_after_sigkill_gives_the_same_weights(ns_files, tmp_path):
    epochs = 6
    base = ns_training_config(ns_files[64], tmp_path / "straight", epochs=epochs)
    base["data"]["windows"] = "all"
    straight_cfg = write_yaml(tmp_path / "straight.yaml", base)
    killed_cfg = write_yaml(
        tmp_path / "killed.yaml",
        base | {"training": base["training"] | {"output_dir": str(tmp_path / "killed")}},
    )
    assert _cli("train", str(straight_cfg)).wait(timeout=600) == 0

    proc = _cli("train", str(killed_cfg))
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline:  # two epochs reported: kill at once, wherever it is
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= 2:
            break  # (writing epoch 2's checkpoint, or early in epoch 3: both must resume)
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    done = json.loads((tmp_path / "killed/checkpoints/last.json").read_text())["epoch"]
    assert done < epochs - 1, "the run finished before it was killed"

    resumed = _cli("train", str(killed_cfg), "--resume")
    out, _ = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, out
    a, b = last_weights(tmp_path / "straight"), last_weights(tmp_path / "killed")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(epochs))


def test_corrupt_and_truncated_checkpoints_are_clear_errors(ns_files, tmp_path):
    run = train(
        load_config(
            write_yaml(tmp_path / "c.yaml", ns_training_config(ns_files[32], tmp_path / "run", 1))
        ),
        progress=False,
    )
    pointer = json.loads((run / "checkpoints/best.json").read_text())
    weights = run / "checkpoints" / pointer["file"]
    blob = weights.read_bytes()
    weights.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        opflow.load(run)
    flipped = bytearray(blob)
    flipped[-10] ^= 0xFF
    weights.write_bytes(bytes(flipped))
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        opflow.load(run)
    (run / "checkpoints/best.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="pointer .* is corrupt"):
        opflow.load(run)
    with pytest.raises(CheckpointError, match="No 'best' checkpoint"):
        opflow.load(tmp_path / "nowhere")


def test_config_errors_suggest_the_fix(ns_files, tmp_path):
    good = ns_training_config(ns_files[32], tmp_path / "run")
    bad = good | {"training": good["training"] | {"epocs": 3}}
    with pytest.raises(
        ConfigError, match=r"Unknown key config.training.epocs.*did you mean config.training.epochs"
    ):
        load_config(write_yaml(tmp_path / "a.yaml", bad))
    bad = good | {"optimizer": {"lr": "fast"}}
    with pytest.raises(ConfigError, match="config.optimizer.lr = 'fast' has the wrong type"):
        load_config(write_yaml(tmp_path / "b.yaml", bad))
    bad = good | {"scheduler": {"name": "cosin"}}
    with pytest.raises(ConfigError, match="did you mean 'cosine'"):
        load_config(write_yaml(tmp_path / "c.yaml", bad))
    bad = good | {"model": {"name": "FNO", "args": {"n_modes": [40, 40], "hidden_channels": 4}}}
    with pytest.raises(opflow.errors.DataError, match="dim 'y' has 32 points"):
        train(load_config(write_yaml(tmp_path / "d.yaml", bad)), progress=False)
    cfg = load_config(write_yaml(tmp_path / "e.yaml", good), ["training.epochs=7", "data.t_in=2"])
    assert cfg.training.epochs == 7 and cfg.data.t_in == 2
    # YAML 1.1 reads 1e-3 as a string; opflow's loader reads it as the float users mean
    (tmp_path / "f.yaml").write_text((tmp_path / "e.yaml").read_text().replace("0.01", "1e-2"))
    assert "1e-2" in (tmp_path / "f.yaml").read_text()
    cfg = load_config(tmp_path / "f.yaml", ["optimizer.weight_decay=5e-4"])
    assert cfg.optimizer.lr == 1e-2 and cfg.optimizer.weight_decay == 5e-4
    # still a safe loader: Python object tags are refused, not constructed
    (tmp_path / "g.yaml").write_text("training: !!python/object/apply:os.getcwd []\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "g.yaml")


class _WithExtraState(torch.nn.Module):
    """A model whose state_dict holds non-tensor metadata (as neuraloperator's models do)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)

    def get_extra_state(self):
        return {"activation": torch.tanh, "note": "not JSON"}

    def set_extra_state(self, state):
        self.restored_extra = state


def test_checkpoints_hold_tensors_only_and_restore_exactly(tmp_path):
    from opflow.run import checkpoint

    model = _WithExtraState()
    checkpoint.save_checkpoint(tmp_path, ["last"], 0, model, None, {"note": "x"})
    tensors, meta = checkpoint.load_checkpoint(tmp_path, "last")
    assert set(tensors) == {"model.lin.weight", "model.lin.bias", "rng.torch"}
    fresh = _WithExtraState()
    checkpoint.restore(tensors, meta, fresh)
    assert torch.equal(fresh.lin.weight, model.lin.weight)
    with pytest.raises(CheckpointError, match="missing"):
        checkpoint.restore({"model.lin.weight": model.lin.weight}, meta, _WithExtraState())


class _Tied(torch.nn.Module):
    """One weight registered under two names (as neuraloperator's LocalNO does) and a
    second, different view of another parameter's storage."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)
        self.again = torch.nn.Linear(3, 3)
        self.again.weight = self.lin.weight
        self.register_buffer("first_row", self.lin.bias.detach()[:1])


def test_tied_weights_are_stored_once_and_restored_to_both_names(tmp_path):
    from opflow.run import checkpoint

    torch.manual_seed(0)
    model = _Tied()
    checkpoint.save_checkpoint(tmp_path, ["last"], 0, model, None, {})
    tensors, meta = checkpoint.load_checkpoint(tmp_path, "last")
    assert "model.again.weight" not in tensors
    assert meta["tied"] == {"again.weight": "lin.weight"}
    torch.manual_seed(1)
    fresh = _Tied()
    checkpoint.restore(tensors, meta, fresh)
    for name, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], value), name
    assert fresh.again.weight is fresh.lin.weight  # still tied


@pytest.mark.parametrize("rollout", [False, True], ids=["direct", "rollout"])
def test_two_variables_two_steps_train_evaluate_and_step(tmp_path, rollout):
    """Several variables x several steps through training (with and without rollout),
    evaluation and the surrogate, each variable's error against its own persistence."""
    from conftest import field_dataset

    from opflow.evaluate import evaluate_run

    ds = field_dataset(n_samples=40, n_times=6, seed=2)
    # a second variable on another scale (~100), so that a mixed-up order cannot pass
    ds["tracer"] = 100.0 + 10.0 * ds.vorticity.roll(x=3) + 0.5 * ds.time
    ds.to_netcdf(tmp_path / "two.nc")
    config = {
        "data": {
            "path": str(tmp_path / "two.nc"),
            "input_variables": ["vorticity", "tracer"],
            "t_in": 2,
            "t_out": 2,
            "split": {"train": 32, "val": 4, "test": 4},
        },
        "model": {
            "name": "FNO",
            "args": {
                "n_modes": [8, 8],
                "hidden_channels": 16,
                "n_layers": 2,
                "positional_embedding": "periodic",
            },
        },
        "optimizer": {"lr": 5.0e-3},
        "training": {
            "epochs": 30,
            "batch_size": 8,
            "threads": 2,
            "rollout": rollout,
            "output_dir": str(tmp_path / "run"),
        },
    }
    run = train(load_config(write_yaml(tmp_path / "c.yaml", config)), progress=False)
    (result,) = evaluate_run(run, [tmp_path / "two.nc"])
    predictions = xr.open_dataset(result.predictions)
    # one figure per variable, named after it
    figures = sorted(p.name for p in Path(result.fields_plot).parent.glob("fields_*.png"))
    assert figures == ["fields_two_tracer.png", "fields_two_vorticity.png"]

    def relative(pred, truth):
        axes = tuple(range(1, pred.ndim))
        return np.mean(np.sqrt(((pred - truth) ** 2).sum(axis=axes) / (truth**2).sum(axis=axes)))

    test = slice(36, 40)  # test pairs: windows t0 = 0, 1, 2 -> inputs t0, t0+1; targets t0+2, t0+3
    for var in ("vorticity", "tracer"):
        values = ds[var].values[test]
        truth = np.concatenate([values[:, t0 + 2 : t0 + 4] for t0 in range(3)])
        last = np.concatenate([values[:, t0 + 1 : t0 + 2].repeat(2, 1) for t0 in range(3)])
        persistence = relative(last, truth)  # vorticity 0.97, tracer 0.049
        error = relative(predictions[var].values, predictions[f"{var}_truth"].values)
        assert error < 0.5 * persistence, (var, error, persistence)  # 0.20, 0.011 measured
    # the surrogate steps an xarray state to the same numbers, each variable in its place
    surrogate = opflow.load(run)
    state = ds.isel(sample=[36], time=[0, 1])
    stepped = surrogate(state)
    pair = 0  # sample 36, window t0 = 0 (predictions are sample-major, then windows)
    for var in ("vorticity", "tracer"):
        np.testing.assert_allclose(
            stepped[var].values[0], predictions[var].values[pair], rtol=1e-5, atol=1e-5
        )
