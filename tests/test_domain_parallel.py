"""Domain parallelism: one field sharded along its first axis across real processes (torchrun,
gloo), checked rank by rank against the unsharded layer."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from opflow.errors import ConfigError, ShapeError
from opflow.models import FNO, LocalNO
from opflow.models.sharded import ShardedFNO
from opflow.spectral import SpectralConv
from opflow.spectral.sharded import ShardedSpectralConv, shard_bounds, shard_sizes

WORKER = Path(__file__).with_name("domain_parallel_worker.py")
TOLERANCE = {"torch.float64": 1e-12, "torch.float32": 1e-5}


def _torchrun(processes: int, out: Path, timeout: float = 180) -> list[dict]:
    """The worker under torchrun; a hung rank fails the test after ``timeout`` seconds."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               f"--nproc-per-node={processes}", str(WORKER), str(out)]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
        start_new_session=True,
    )  # fmt: skip
    try:
        log, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        log, _ = proc.communicate()
        pytest.fail(f"{processes} ranks still running after {timeout} s:\n{log[-3000:]}")
    assert proc.returncode == 0, log[-3000:]
    return [json.loads(line) for f in sorted(out.glob("rank_*.jsonl")) for line in f.open()]


@pytest.mark.parametrize("processes", [2, 3])
def test_sharded_layers_equal_the_unsharded_layers(processes, tmp_path):
    """SpectralConv (2-D and 3-D, 13 rows over 2 or 3 ranks), SphericalConv (diagonal and
    isotropic, 17 or 12 latitudes; equiangular and Gauss grids), output grids finer and
    coarser than the input, and whole FNOs (both positional embeddings) and an SFNO (xyz
    embedding), float64 and float32:
    values, input gradients and the group's summed parameter gradients equal the unsharded
    ones."""
    results = _torchrun(processes, tmp_path)
    assert len(results) == 11 * processes
    for r in results:
        tolerance = TOLERANCE[r["dtype"]]
        assert r["output"] < tolerance, r  # measured ~5e-16 (float64)
        assert r["input_grad"] < tolerance and r["parameter_grads"] < 10 * tolerance, r
    rows = sorted({tuple(r["rows"]) for r in results if r["case"] == "plane 0"})
    assert rows == shard_bounds(13, processes)  # every row of the field was held by a rank


def test_shards_split_as_evenly_as_possible():
    assert shard_sizes(13, 3) == [5, 4, 4] and shard_sizes(12, 5) == [3, 3, 2, 2, 2]
    assert shard_bounds(13, 3) == [(0, 5), (5, 9), (9, 13)]
    assert list(torch.arange(13).tensor_split(3)[1]) == list(range(5, 9))


def test_one_process_is_the_unsharded_layer_and_bad_shards_are_clear_errors():
    torch.manual_seed(0)
    conv = SpectralConv(2, 3, (6, 6)).double()
    x = torch.randn(2, 2, 12, 10, dtype=torch.float64)
    sharded = ShardedSpectralConv(conv)
    torch.testing.assert_close(sharded(x, (12, 10)), conv(x), rtol=0, atol=1e-12)
    with pytest.raises(ShapeError, match="global grid"):
        sharded(x, (12,))
    with pytest.raises(ShapeError, match="shard"):
        sharded(x[:, :, :6], (12, 10))  # a one-process group holds every row


def test_sharded_fno_on_one_process_is_the_fno_and_refuses_what_it_cannot_shard():
    torch.manual_seed(0)
    model = FNO(n_modes=(6, 6), in_channels=2, out_channels=1, hidden_channels=8, n_layers=3,
                positional_embedding="periodic").double()  # fmt: skip
    x = torch.randn(2, 2, 13, 12, dtype=torch.float64)
    torch.testing.assert_close(ShardedFNO(model)(x, (13, 12)), model(x), rtol=0, atol=1e-12)
    padded = FNO((6, 6), 2, 1, hidden_channels=8, domain_padding=0.25)
    with pytest.raises(ConfigError, match="domain padding"):
        ShardedFNO(padded)
    local = LocalNO((6, 6), 2, 1, hidden_channels=8, differential_kernel=True)
    with pytest.raises(ConfigError, match="local branches"):
        ShardedFNO(local)
