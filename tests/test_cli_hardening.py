"""Bad input through the command line: one line on stderr (what, expected, fix), exit status 2,
no traceback, nothing written; and the command line's own manners (version, quiet, logs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def _opflow(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "opflow.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("opflow: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


TINY_RECIPE = {
    "name": "tiny",
    "equation": "navier_stokes",
    "viscosity": 1.0e-3,
    "resolutions": [16],
    "n_samples": 12,
    "n_records": 3,
    "dtype": "float32",
}


def _config(data: str, output_dir: str, epochs: int = 2) -> dict:
    return {
        "data": {
            "path": data,
            "input_variables": ["vorticity"],
            "split": {"train": 8, "val": 2, "test": 2},
        },
        "model": {"name": "FNO", "args": {"n_modes": [4, 4], "hidden_channels": 4, "n_layers": 1}},
        "training": {"epochs": epochs, "batch_size": 4, "output_dir": output_dir},
    }


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with a 16x16 NS file and a config that trains on it."""
    work = tmp_path_factory.mktemp("cli")
    (work / "recipe.yaml").write_text(yaml.safe_dump(TINY_RECIPE))
    made = _opflow("generate", "recipe.yaml", "-o", "ns.nc", cwd=work)
    assert made.returncode == 0, made.stderr
    (work / "config.yaml").write_text(yaml.safe_dump(_config("ns.nc", "run")))
    return work


def test_a_yaml_syntax_error_is_one_line_with_file_line_and_column(work):
    (work / "broken.yaml").write_text("data:\n  path: ns.nc\n  t_in: [1,\nmodel: {name: FNO}\n")
    line = _one_line_error(_opflow("train", "broken.yaml", cwd=work), "broken.yaml, line ")
    assert "starts at line 3, column 9" in line  # where the unclosed list began


def test_bad_set_values_are_one_line_errors_and_tags_are_never_run(work):
    _one_line_error(
        _opflow("train", "config.yaml", "--set", "training.epochs=[1,", cwd=work),
        "--set 'training.epochs=[1,'",
    )
    planted = work / "PLANTED"
    tag = f'training.seed=!!python/object/apply:os.system ["touch {planted}"]'
    _one_line_error(
        _opflow("train", "config.yaml", "--set", tag, cwd=work), "is not a plain YAML value"
    )
    assert not planted.exists()
    assert not (work / "run").exists()


def test_outputs_that_cannot_be_written_fail_before_the_work(work):
    """A file where a directory should be (a read-only directory behaves the same way for a
    user; as root only this can be made to fail)."""
    (work / "afile").write_text("")
    big = dict(TINY_RECIPE, resolutions=[256], n_samples=100_000)  # hours, if it started
    (work / "big.yaml").write_text(yaml.safe_dump(big))
    _one_line_error(
        _opflow("generate", "big.yaml", "-o", "afile/sub/ns.nc", cwd=work, timeout=60),
        "Cannot write the dataset",
        "is a file, not a directory",
    )
    _one_line_error(
        _opflow("train", "config.yaml", "--set", "training.output_dir=afile/run", cwd=work),
        "Cannot write the run to",
    )


def test_resume_without_a_run_is_an_error_not_a_new_run(work):
    _one_line_error(
        _opflow("train", "config.yaml", "--set", "training.output_dir=typo", "--resume", cwd=work),
        "Nothing to resume",
    )
    assert not (work / "typo").exists()


def test_evaluating_a_missing_run_leaves_nothing_behind(work):
    _one_line_error(_opflow("evaluate", "nowhere", "--data", "ns.nc", cwd=work), "nowhere")
    assert not (work / "nowhere").exists()


def test_training_logs_to_train_log_quiet_hides_progress_and_checkpoints_know_versions(work):
    import opflow

    quiet = _opflow("--quiet", "train", "config.yaml", "--set", "training.output_dir=q", cwd=work)
    assert quiet.returncode == 0, quiet.stderr
    assert "epoch" not in quiet.stdout and quiet.stderr == ""  # no lines, no progress bars
    log = (work / "q" / "train.log").read_text().splitlines()
    assert [line.split(": ", 1)[1].split("  ")[0] for line in log] == ["epoch 1/2", "epoch 2/2"]
    # not quiet: the epoch lines on stdout, and no progress bar when stderr is not a terminal
    loud = _opflow("train", "config.yaml", "--set", "training.output_dir=l", cwd=work)
    assert loud.stdout.count("epoch ") == 2 and "it/s" not in loud.stderr, loud.stderr
    pointer = json.loads((work / "q" / "checkpoints" / "last.json").read_text())
    from safetensors import safe_open

    with safe_open(work / "q" / "checkpoints" / pointer["file"], "pt") as f:
        meta = json.loads(f.metadata()["opflow"])
    import torch

    assert meta["versions"] == {"opflow": opflow.__version__, "torch": torch.__version__}


def test_evaluate_warns_when_the_runs_config_was_edited(work):
    assert (
        _opflow("train", "config.yaml", "--set", "training.output_dir=e", cwd=work).returncode == 0
    )
    same = _opflow("evaluate", "e", "--data", "ns.nc", cwd=work)
    assert same.returncode == 0 and "warning" not in same.stderr, same.stderr
    edited = yaml.safe_load((work / "e" / "config.yaml").read_text())
    edited["model"]["args"]["hidden_channels"] = 64
    (work / "e" / "config.yaml").write_text(yaml.safe_dump(edited))
    warned = _opflow("evaluate", "e", "--data", "ns.nc", cwd=work)
    assert warned.returncode == 0
    assert "opflow: warning: " in warned.stderr and "(sections model)" in warned.stderr


def test_version_and_help_read_cleanly(work):
    import opflow

    version = _opflow("--version", cwd=work)
    assert version.stdout.strip() == f"opflow {opflow.__version__}"
    top = _opflow("--help", cwd=work).stdout
    assert "``" not in top and "--quiet" in top
    for command in ("generate", "train", "evaluate", "quickstart", "gp-solve"):
        text = _opflow(command, "--help", cwd=work).stdout
        arguments = [
            ln for ln in text.splitlines() if ln.startswith("  ") and "-h, --help" not in ln
        ]
        assert arguments and all(len(ln.split(None, 1)) == 2 or ln.startswith("    ")
                                 for ln in arguments), text  # fmt: skip


def test_importing_opflow_leaves_the_matplotlib_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg'); "
        "import opflow.evaluate, opflow.gp.run, opflow.evaluate.plots; "
        "print(matplotlib.get_backend())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "svg", out.stderr


def test_epochs_reach_weights_and_biases_offline(work):
    env_run = subprocess.run(
        [sys.executable, "-m", "opflow.cli", "train", "config.yaml",
         "--set", "training.output_dir=w", "--set", "training.tracker=wandb"],
        cwd=work, capture_output=True, text=True, timeout=300,
        env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"},
    )  # fmt: skip
    assert env_run.returncode == 0, env_run.stderr
    rows = [json.loads(line) for line in (work / "w" / "metrics.jsonl").read_text().splitlines()]
    (record,) = (work / "w" / "wandb").glob("offline-run-*/run-*.wandb")
    logged = record.read_bytes()  # the run's protobuf log keeps each value as JSON text
    assert all(json.dumps(r["val_rel_l2"]).encode() in logged for r in rows)


def test_a_tracker_that_is_not_installed_stops_the_run_before_it_writes(work):
    import importlib.util

    if importlib.util.find_spec("mlflow") is not None:  # installed: it records the run
        done = _opflow("train", "config.yaml", "--set", "training.output_dir=m",
                       "--set", "training.tracker=mlflow", cwd=work, timeout=300)  # fmt: skip
        assert done.returncode == 0 and (work / "m" / "mlruns").is_dir(), done.stderr
        return
    _one_line_error(
        _opflow(
            "train",
            "config.yaml",
            "--set",
            "training.output_dir=m",
            "--set",
            "training.tracker=mlflow",
            cwd=work,
        ),  # fmt: skip
        "mlflow is not installed",
        "pip install mlflow",
    )
    assert not (work / "m").exists()
