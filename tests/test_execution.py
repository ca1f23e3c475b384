"""Execution: data-parallel training in real processes (torchrun, gloo), devices, precision,
lazily read data through worker processes, torch.compile.

Every multi-process test runs real ``torchrun`` launches of ``opflow train`` and bounds each
wait, so a hung process fails the test instead of hanging the suite.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from conftest import field_dataset, last_weights

import opflow
from opflow.errors import BackendError, ConfigError
from opflow.evaluate import evaluate_run
from opflow.train import load_config, train

N_TRAIN = 37  # with batch 9: batches of 9, 9, 9, 9 and 1 -> shards 5/4 and, last, 1/0
EPOCHS = 24  # enough for a kill to land mid-run (an epoch takes ~0.1 s)


def _config(data: Path, out: Path, epochs: int = EPOCHS, **training) -> dict:
    return {
        "data": {
            "path": str(data),
            "input_variables": ["vorticity"],
            "time_start": 1,
            "windows": "first",
            "split": {"train": N_TRAIN, "val": 6, "test": 5},
        },
        "model": {"name": "FNO", "args": {"n_modes": [6, 6], "hidden_channels": 8, "n_layers": 2}},
        "optimizer": {"lr": 5.0e-3},
        "training": {
            "epochs": epochs,
            "batch_size": 9,
            "seed": 1,
            "threads": 1,
            "output_dir": str(out),
        }
        | training,
    }


@pytest.fixture(scope="module")
def data_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dp") / "fields.nc"
    field_dataset(n_samples=N_TRAIN + 11, n_times=4, ny=16, nx=16, seed=4).to_netcdf(path)
    return path


def _write(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def _max_relative_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(((a[k] - b[k]).norm() / b[k].norm().clamp_min(1e-12)).item() for k in a)


def _opflow(*args: str, tag: str = "") -> subprocess.Popen:
    """``opflow ARGS`` in a new process group; ``tag`` marks it and every process it starts
    (torchrun starts its workers in sessions of their own) in ``OPFLOW_TEST_TAG``."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1", OPFLOW_TEST_TAG=tag)
    return subprocess.Popen(
        [sys.executable, "-m", "opflow", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,
    )


def _tagged(tag: str) -> dict[int | None, int]:
    """``{rank: pid}`` of the live processes started with ``tag`` (rank None: launchers)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        values = dict(item.split(b"=", 1) for item in environ if b"=" in item)
        if values.get(b"OPFLOW_TEST_TAG") == tag.encode() and state != "Z":
            rank = int(values[b"RANK"]) if b"RANK" in values else None
            found[rank if rank is not None else -int(entry.name)] = int(entry.name)
    return found


def _kill_all(tag: str) -> None:
    for pid in _tagged(tag).values():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _finish(proc: subprocess.Popen, timeout: float = 300, tag: str = "") -> str:
    """The output of ``proc`` once it ends; kills it (and its tagged workers) after timeout."""
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_all(tag)
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"process still running after {timeout} s:\n{out[-3000:]}")
    return out


@pytest.fixture(scope="module")
def one_process_run(data_file, tmp_path_factory) -> Path:
    """The reference: one process, global batch 9."""
    folder = tmp_path_factory.mktemp("one")
    return train(load_config(_write(folder / "c.yaml", _config(data_file, folder / "run"))))


def test_two_processes_reach_the_weights_of_one(data_file, one_process_run, tmp_path):
    config = _write(tmp_path / "c.yaml", _config(data_file, tmp_path / "run"))
    proc = _opflow("train", str(config), "--nproc", "2")
    out = _finish(proc)
    assert proc.returncode == 0, out[-3000:]
    assert out.count(f"epoch {EPOCHS}/{EPOCHS}  train") == 1  # rank 0 alone reports
    _assert_same_training(tmp_path / "run", one_process_run)


def _assert_same_training(run: Path, reference_run: Path) -> None:
    """The same last weights (1e-5 relative) and per-epoch train loss and validation error
    (1e-5) as ``reference_run``."""
    difference = _max_relative_difference(last_weights(run), last_weights(reference_run))
    assert difference < 1e-5, difference
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    reference = [json.loads(x) for x in (reference_run / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == len(reference) == EPOCHS
    for row, ref in zip(rows, reference):
        assert row["train_loss"] == pytest.approx(ref["train_loss"], rel=1e-5)
        assert row["val_rel_l2"] == pytest.approx(ref["val_rel_l2"], rel=1e-5)


@pytest.mark.parametrize("processes", [2, 4], ids=["2x1", "2x2"])
def test_processes_sharing_each_field_reach_the_weights_of_one(
    data_file, one_process_run, tmp_path, processes
):
    """training.spatial_parallel: 2 — two processes hold 8 of the 16 rows of every sample,
    alone (2 = 2 x 1) or as one of two data-parallel replicas (4 = 2 x 2, shards 5/4 and a
    last batch 1/0): the same weights and metrics as one process."""
    config = _write(tmp_path / "c.yaml", _config(data_file, tmp_path / "run", spatial_parallel=2))
    proc = _opflow("train", str(config), "--nproc", str(processes))
    out = _finish(proc)
    assert proc.returncode == 0, out[-3000:]
    _assert_same_training(tmp_path / "run", one_process_run)
    # the sharded run's checkpoint is an ordinary one: evaluated unsharded, the same test error
    sharded = evaluate_run(tmp_path / "run", [data_file], out_dir=tmp_path / "eval")[0]
    alone = evaluate_run(one_process_run, [data_file], out_dir=tmp_path / "eval_one")[0]
    assert sharded.rel_l2 == pytest.approx(alone.rel_l2, rel=1e-5)


def test_spatial_parallel_needs_a_divisible_number_of_processes(data_file, tmp_path):
    config = _write(tmp_path / "c.yaml", _config(data_file, tmp_path / "run", spatial_parallel=2))
    with pytest.raises(ConfigError, match="divisible by spatial_parallel"):
        train(load_config(config))  # one process cannot be split in two


STAGE = {"name": "FNO", "args": {"n_modes": [6, 6], "hidden_channels": 8, "n_layers": 2}}


@pytest.mark.parametrize(
    "model, data, training",
    [
        # SpecBoost: the trainable parameters change between stages (DDP is rebuilt)
        ({"name": "SpecBoost", "args": {"stages": [STAGE, STAGE]}}, {}, {}),
        # a rollout: the model is applied twice inside one DDP forward
        (STAGE, {"t_out": 2}, {"rollout": True}),
    ],
    ids=["specboost", "rollout"],
)
def test_two_processes_train_staged_and_rollout_models_as_one(
    data_file, tmp_path, model, data, training
):
    runs = {}
    for nproc in (1, 2):
        config = _config(data_file, tmp_path / f"run{nproc}", epochs=6, **training)
        config["model"] = model
        config["data"] |= data
        path = _write(tmp_path / f"c{nproc}.yaml", config)
        if nproc == 1:
            runs[nproc] = train(load_config(path))
            continue
        proc = _opflow("train", str(path), "--nproc", "2", tag=str(tmp_path))
        out = _finish(proc, tag=str(tmp_path))
        assert proc.returncode == 0, out[-3000:]
        runs[nproc] = tmp_path / "run2"
    difference = _max_relative_difference(last_weights(runs[2]), last_weights(runs[1]))
    assert difference < 1e-5, difference


def test_killed_two_process_run_resumes_with_one_process(data_file, one_process_run, tmp_path):
    config = _write(tmp_path / "c.yaml", _config(data_file, tmp_path / "run"))
    tag = str(tmp_path)
    proc = _opflow("train", str(config), "--nproc", "2", tag=tag)
    metrics = tmp_path / "run" / "metrics.jsonl"
    pointer = tmp_path / "run" / "checkpoints" / "last.json"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if pointer.is_file() and json.loads(pointer.read_text())["epoch"] >= 1:
            break  # epoch 2's checkpoint written: kill the launcher and both workers mid-run
        time.sleep(0.01)
    _kill_all(tag)
    _finish(proc, timeout=60, tag=tag)
    done = json.loads((tmp_path / "run/checkpoints/last.json").read_text())["epoch"]
    assert 1 <= done < EPOCHS - 1, f"killed after epoch {done}"

    train(load_config(config), resume=True)  # one process now
    difference = _max_relative_difference(
        last_weights(tmp_path / "run"), last_weights(one_process_run)
    )
    assert difference < 1e-5, difference
    rows = [json.loads(x) for x in metrics.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == list(range(EPOCHS))


def test_a_dead_process_stops_the_run_with_a_clear_error(data_file, tmp_path):
    config = _config(data_file, tmp_path / "run", epochs=2000)
    tag = str(tmp_path)
    proc = _opflow("train", str(_write(tmp_path / "c.yaml", config)), "--nproc", "2", tag=tag)
    metrics = tmp_path / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.is_file() and metrics.read_text().strip():
            break  # training is under way on both ranks
        time.sleep(0.01)
    ranks = {rank: pid for rank, pid in _tagged(tag).items() if rank >= 0}
    assert sorted(ranks) == [0, 1], ranks
    os.kill(ranks[1], signal.SIGKILL)
    killed = time.monotonic()
    out = _finish(proc, timeout=120, tag=tag)
    assert time.monotonic() - killed < 90
    assert proc.returncode == 2
    last = out.strip().splitlines()[-1]
    assert last.startswith(
        "opflow: error: the 2-process training run failed: rank 1 (pid "
        f"{ranks[1]}) was stopped by SIGKILL first"
    ), last
    assert "--resume" in last
    assert not _tagged(tag), "a process of the run stayed behind"


def test_cuda_on_a_machine_without_one_is_a_one_line_error(data_file, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    config = _write(tmp_path / "c.yaml", _config(data_file, tmp_path / "run"))
    proc = _opflow("train", str(config), "--set", "training.device=cuda")
    out = _finish(proc, timeout=120)
    assert proc.returncode == 2
    lines = out.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("opflow: error: device 'cuda'"), out
    assert not (tmp_path / "run").exists()
    with pytest.raises(BackendError, match="no usable CUDA GPU"):
        opflow.load(tmp_path, device="cuda:0")


def test_float64_surrogate_agrees_with_float32(data_file, one_process_run):
    single = opflow.load(one_process_run)
    double = opflow.load(one_process_run, dtype=torch.float64)
    x = torch.from_numpy(field_dataset(n_samples=3, n_times=1, seed=9)["vorticity"].values)
    y32, y64 = single(x), double(x.double())
    assert y32.dtype == torch.float32 and y64.dtype == torch.float64
    assert all(p.dtype == torch.float64 for p in double.model.parameters())
    assert ((y64 - y32.double()).norm() / y64.norm()).item() < 1e-5


def test_fp64_and_bf16_mixed_training(data_file, one_process_run, tmp_path):
    reference = last_weights(one_process_run)
    runs = {}
    for precision in ("fp64", "bf16-mixed"):
        cfg = _config(data_file, tmp_path / precision, precision=precision)
        runs[precision] = train(load_config(_write(tmp_path / f"{precision}.yaml", cfg)))
    double = last_weights(runs["fp64"])
    assert all(v.dtype == torch.float64 for v in double.values())
    # the same run in float64: the float32 reference's rounding is all that differs
    assert _max_relative_difference({k: v.float() for k, v in double.items()}, reference) < 1e-4
    val = {
        name: json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["val_rel_l2"]
        for name, run in [("fp32", one_process_run), *runs.items()]
    }
    assert val["bf16-mixed"] < 1.5 * val["fp32"], val


def test_lazily_read_data_through_workers_trains_the_same_weights(
    data_file, one_process_run, tmp_path
):
    config = _config(data_file, tmp_path / "run", workers=2)
    config["data"]["max_memory_gb"] = 1e-9  # larger than "memory": read through dask
    run = train(load_config(_write(tmp_path / "c.yaml", config)))
    reference = last_weights(one_process_run)
    lazy = last_weights(run)
    assert all(torch.equal(lazy[k], reference[k]) for k in reference)


def test_spectral_layers_stay_in_float32_under_autocast():
    from opflow.models import FNO
    from opflow.spectral import SpectralConv

    torch.manual_seed(0)
    conv = SpectralConv(4, 4, n_modes=(8, 8))
    x = torch.randn(2, 4, 16, 16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(x)
        y_half_input = conv(x.bfloat16())
    assert y.dtype == torch.float32 and torch.equal(y, conv(x))
    assert torch.equal(y_half_input, conv(x.bfloat16().float()))
    model = FNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=16)
    x = torch.randn(4, 1, 32, 32)
    reference = model(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x)
    mixed.float().square().mean().backward()  # the composed path has gradients
    assert all(p.grad is not None for p in model.parameters())
    # bfloat16 keeps 8 bits of mantissa: 2^-8 = 4e-3 relative per product
    assert ((mixed.float() - reference).norm() / reference.norm()).item() < 1e-2


def test_compiled_training_of_the_quickstart_config(data_file, tmp_path):
    from opflow.cli import _find

    overrides = [
        f"data.path={data_file}",
        "data.split={train: 16, val: 4, test: 4}",
        "training.epochs=1",
        "training.batch_size=8",
        "training.threads=2",
    ]
    losses = {}
    for compiled in (False, True):
        out = tmp_path / f"compiled_{compiled}"
        config = load_config(
            _find("configs/quickstart.yaml"),
            [*overrides, f"training.output_dir={out}", f"training.compile={compiled}"],
        )
        run = train(config)
        losses[compiled] = json.loads((run / "metrics.jsonl").read_text())["train_loss"]
    # the compiled model computes the eager one's values (to float32 reordering)
    assert losses[True] == pytest.approx(losses[False], rel=1e-4), losses


def test_the_embedding_api_does_not_import_training():
    # the run layer sits below both: loading a surrogate needs no trainer, no config schema
    code = (
        "import sys, opflow; opflow.load; "
        "print(sorted(m for m in sys.modules if m.startswith(('opflow.train', 'opflow.evaluate'))))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


_ALLOCATIONS = """
import resource, sys, torch
from opflow.run.execution import retain_freed_cpu_memory
torch.set_num_threads(1)
if sys.argv[1] == "retain":
    assert retain_freed_cpu_memory()
faults = []
for _ in range(12):  # a 48 MB tensor allocated, written and freed, as training steps do
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.ones(12 * 2**20)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(faults)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_retained_cpu_memory_serves_the_next_tensor_without_fresh_pages():
    """The trainer's CPU setting (training.retain_cpu_memory): a freed 48 MB tensor's pages
    serve the next ones. Without it every allocation faults in all its 12 288 pages again;
    with it, once the heap has grown to the working set (a step or two), the last eight
    together fault in at most a tenth of one tensor (page-fault counts, a fresh process per
    setting)."""
    pages = 12 * 2**20 * 4 // 4096

    released, retained = (
        json.loads(subprocess.run([sys.executable, "-c", _ALLOCATIONS, setting], text=True,
                                  capture_output=True, timeout=120, check=True).stdout)
        for setting in ("release", "retain")
    )  # fmt: skip
    assert all(f >= 0.9 * pages for f in released[4:]), released
    assert sum(retained[4:]) <= 0.1 * pages, retained
