"""Staged models in training (SpecBoost): each stage learns the residual of the frozen ones
before it, scaled to unit RMS, on their prediction computed once per stage."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import ns_training_config, write_yaml

import opflow
from opflow.errors import ConfigError, DataError
from opflow.run.distributed import ProcessGroup
from opflow.train import load_config, train


def test_specboost_second_stage_reduces_the_error_and_its_high_wavenumbers(ns_files, tmp_path):
    from opflow.evaluate import evaluate_run, spectral_error

    stage = {"name": "FNO", "args": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2}}
    cfg = ns_training_config(ns_files[32], tmp_path / "run", epochs=16)
    cfg["model"] = {"name": "SpecBoost", "args": {"stages": [stage, stage]}}
    run = train(load_config(write_yaml(tmp_path / "cfg.yaml", cfg)), progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 16
    assert rows[-1]["train_loss"] < rows[7]["train_loss"]  # stage 2 vs the end of stage 1

    surrogate = opflow.load(run, "last")
    assert surrogate.model.active_stages == 2
    # stage 2 learnt stage 1's residual at unit scale: its scale is that residual's RMS
    assert 0.01 < surrogate.model.stage_scale[1].item() < 1.0
    data = opflow.data.FieldData(load_config(tmp_path / "cfg.yaml").data)
    x, y = data.dataset("val").batch(range(len(data.dataset("val"))))
    errors = {}
    for active in (1, 2):
        surrogate.model.active_stages = active
        with torch.no_grad():
            errors[active] = spectral_error(surrogate.predict(x), y).error_energy
    high = slice(4, None)  # wavenumbers 4..16 of the 32x32 grid
    assert errors[2][high].sum() < errors[1][high].sum()
    assert errors[2].sum() < errors[1].sum()

    surrogate.model.active_stages = 2
    results = evaluate_run(run, [ns_files[32], ns_files[64]], checkpoint="last")
    # zero-shot at 2x: 0.1084 at 64x64 vs 0.1084 at 32x32 measured (was allowed 50% worse)
    assert results[1].grid == [64, 64] and results[1].rel_l2 < 1.02 * results[0].rel_l2
    assert (run / "evaluation" / "error_spectrum.png").is_file()


def test_specboost_scales_a_later_stage_by_its_residual_scale():
    from opflow.models import build_model

    stage = {"name": "FNO", "args": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2}}
    torch.manual_seed(0)
    model = build_model("SpecBoost", stages=[stage] * 2, in_channels=1, out_channels=1,
                        feed_prediction=True)  # fmt: skip
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        model.active_stages = 1
        first = model(x)
        second = model.stages[1](torch.cat((x, first), dim=1))
        model.active_stages = 2
        model.set_residual_scale(1, 0.25)
        torch.testing.assert_close(model(x), first + 0.25 * second)
    with pytest.raises(ConfigError, match="positive scale"):
        model.set_residual_scale(0, 0.5)


@pytest.mark.parametrize("feed", [False, True], ids=["sum", "fed prediction"])
def test_specboost_with_the_frozen_prediction_given_equals_the_full_sum(feed):
    """The cached path (``previous``: the frozen stages' sum) computes the same prediction and
    the same gradients of the training stage as running every stage (float64, 1e-12)."""
    from opflow.models import build_model

    stage = {"name": "FNO", "args": {"n_modes": [6, 6], "hidden_channels": 6, "n_layers": 2}}
    torch.manual_seed(0)
    model = build_model("SpecBoost", stages=[stage] * 3, in_channels=2, out_channels=1,
                        feed_prediction=feed).double()  # fmt: skip
    model.set_stage(2)
    model.set_residual_scale(1, 0.3)
    model.set_residual_scale(2, 0.2)
    x = torch.randn(3, 2, 16, 16, dtype=torch.float64)
    outputs, grads = [], []
    for cached in (False, True):
        model.zero_grad()
        previous = None
        if cached:
            with torch.no_grad():
                model.active_stages = 2
                previous = model(x)
                model.active_stages = 3
        out = model(x, previous=previous)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in model.stages[2].parameters()])
        assert all(p.grad is None for p in model.stages[0].parameters())
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_a_later_stage_trains_on_the_frozen_prediction_computed_once(ns_files, tmp_path):
    """The trainer's cache holds, for every training pair, what the frozen stage predicts."""
    from opflow.train.context import RunContext
    from opflow.train.stages import begin_stage

    stage = {"name": "FNO", "args": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2}}
    cfg = ns_training_config(ns_files[32], tmp_path / "run", epochs=4)
    cfg["model"] = {"name": "SpecBoost", "args": {"stages": [stage, stage]}}
    config = load_config(write_yaml(tmp_path / "cfg.yaml", cfg))
    run = train(config, progress=False)
    surrogate = opflow.load(run, "last")
    data = opflow.data.FieldData(config.data)
    train_set = data.dataset("train")
    ctx = RunContext(opflow.run.execution.Execution(torch.device("cpu")), ProcessGroup(), 0)
    surrogate.model.set_stage(1)
    frozen = begin_stage(surrogate, 1, train_set, 8, ctx, rescale=False)
    assert len(frozen.values) == len(train_set)
    items = torch.tensor([0, 5, len(train_set) - 1])
    x, _ = train_set.batch(items)
    surrogate.model.active_stages = 1
    with torch.no_grad():
        expected = surrogate.forward_normalized(surrogate.normalizer.encode(x, ["vorticity"], 1))
    torch.testing.assert_close(frozen.batch(items), expected, rtol=1e-5, atol=1e-6)


def test_staged_training_needs_epochs_divisible_by_stages(ns_files, tmp_path):
    stage = {"name": "FNO", "args": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2}}
    cfg = ns_training_config(ns_files[32], tmp_path / "run", epochs=5)
    cfg["model"] = {"name": "SpecBoost", "args": {"stages": [stage, stage]}}
    with pytest.raises(ConfigError, match="multiple of 2"):
        train(load_config(write_yaml(tmp_path / "cfg.yaml", cfg)), progress=False)


def test_staged_model_checks_the_grid_against_its_largest_stage(ns_files, tmp_path):
    """SpecBoost declares the modes of its stages: a second stage keeping more modes than the
    32x32 data carry is a data error before training, not a silently truncated stage."""
    small = {"name": "FNO", "args": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2}}
    large = {"name": "FNO", "args": {"n_modes": [40, 40], "hidden_channels": 8, "n_layers": 2}}
    cfg = ns_training_config(ns_files[32], tmp_path / "run", epochs=2)
    cfg["model"] = {"name": "SpecBoost", "args": {"stages": [small, large]}}
    with pytest.raises(DataError, match="n_modes\\[0\\]=40"):
        train(load_config(write_yaml(tmp_path / "cfg.yaml", cfg)), progress=False)
    assert not (tmp_path / "run").exists()
