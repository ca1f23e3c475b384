"""Domain parallelism: memory per rank and bytes moved when one field is split over P processes.

An FNO (hidden 32, 4 layers, 16 modes per axis) on one 1024x1024 field (batch 1), forward and
backward, run by ``opflow.models.sharded.ShardedFNO`` under torchrun (gloo) with P = 1, 2, 4
processes on this machine. Per P it prints:

* peak resident memory added by the first step on each rank (max over ranks; the RSS
  high-water mark after it minus the RSS before it, so it counts what the step allocated, not
  torch's import or the model);
* bytes each spectral layer hands to the all-to-all in the forward pass, as counted at the call
  (the rank's own block excluded), beside the formula ``8 B (C_in n_0 + C_out n_0') M_rest
  (P - 1) / P`` summed over ranks (complex64: 8 bytes a value; ``M_rest`` the kept modes of the
  axes held whole); the backward moves the same again;
* wall time of the second step (informative only: 2 cores, so P = 4 oversubscribes them).

``--project`` prints, without running anything, the paper projection for a 0.25° global field
(721 x 1440, an SFNO of width 256, 8 blocks, all 721 degrees and orders kept, batch 1, float32):
activation memory per GPU from the bytes per point, channel and block measured here (P = 1 at
1024², fwd+bwd: 28.6 B), the spectral weights (per degree, as makani's ``dhconv``), and the
all-to-all volume per step by the formula (in total and sent by each GPU), for P = 1..16.

    python benchmarks/domain_parallel.py [--grid 1024 1024] [--processes 1 2 4] [--project]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HIDDEN, LAYERS, MODES = 32, 4, 16


def worker(grid: tuple[int, int], out: Path) -> None:
    import torch
    import torch.distributed as dist

    import opflow.spectral.sharded as sharded_core
    from opflow.models import FNO
    from opflow.models.sharded import ShardedFNO
    from opflow.spectral.sharded import shard_bounds

    dist.init_process_group("gloo")
    rank, size = dist.get_rank(), dist.get_world_size()
    moved = []
    exchange = sharded_core._all_to_all

    def counting(x, send, receive, group):
        row_bytes = x[0].numel() * x.element_size() if len(x) else 0
        moved.append((sum(send) - send[rank]) * row_bytes)
        return exchange(x, send, receive, group)

    sharded_core._all_to_all = counting
    torch.manual_seed(0)
    model = FNO((MODES, MODES), 1, 1, hidden_channels=HIDDEN, n_layers=LAYERS)
    lo, hi = shard_bounds(grid[0], size)[rank]
    x = torch.randn(1, 1, *grid)[:, :, lo:hi].contiguous()
    sharded = ShardedFNO(model)
    dist.barrier()
    before = _rss_bytes()  # the first step's high-water mark: what one step needs
    sharded(x, grid).square().mean().backward()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    model.zero_grad()
    moved.clear()
    dist.barrier()
    started = time.perf_counter()
    sharded(x, grid).square().mean().backward()
    seconds = time.perf_counter() - started
    result = {"rank": rank, "added_bytes": peak - before, "seconds": seconds, "moved": moved}
    (out / f"rank_{rank}.json").write_text(json.dumps(result))
    dist.destroy_process_group()


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _formula(grid: tuple[int, int], processes: int) -> float:
    """Bytes all ranks send per spectral layer, forward: both exchanges, complex64."""
    kept_rest = MODES // 2 + 1  # the last axis keeps 0..MODES//2
    values = HIDDEN * grid[0] * kept_rest + HIDDEN * grid[0] * kept_rest
    return 8 * values * (processes - 1) / processes


MEASURED_BYTES = 28.6  # per point, channel and block of a training step (the 1024² run, P = 1)


def projection() -> None:
    nlat, nlon, width, blocks, lmax = 721, 1440, 256, 8, 721
    activations = MEASURED_BYTES * nlat * nlon * width * blocks
    weights = blocks * lmax * width * width * 4 * 4  # fp32 weights + grad + Adam's two moments
    print(f"projection: SFNO {nlat}x{nlon}, width {width}, {blocks} blocks, lmax = mmax = {lmax}")
    print(
        f"{'P':>3} {'activations GB/GPU':>19} {'weights+Adam GB':>16} "
        f"{'all-to-all GB/step':>19} {'sent GB/GPU/step':>17}"
    )
    for processes in (1, 2, 4, 8, 16):
        # per block, both exchanges, forward and backward: 8 B x C x (nlat + nlat') x mmax
        volume = 2 * blocks * 8 * width * 2 * nlat * lmax * (processes - 1) / processes
        print(
            f"{processes:>3} {activations / processes / 1e9:>19.1f} {weights / 1e9:>16.1f} "
            f"{volume / 1e9:>19.1f} {volume / processes / 1e9:>17.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, nargs=2, default=[1024, 1024])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--project", action="store_true", help="the 721x1440 projection only")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    grid = tuple(args.grid)
    if args.project:
        projection()
        return
    if args.worker:
        worker(grid, Path(args.worker))
        return
    print(f"ShardedFNO fwd+bwd, hidden {HIDDEN}, {LAYERS} layers, {MODES} modes, grid {grid}")
    print(
        f"{'P':>2} {'peak added / rank':>18} {'x P=1':>6} {'MB moved / layer':>17} "
        f"{'formula':>8} {'step s':>7}"
    )
    base = None
    for processes in args.processes:
        with tempfile.TemporaryDirectory() as out:
            command = [
                sys.executable, "-m", "torch.distributed.run", "--standalone",
                f"--nproc-per-node={processes}", __file__, "--grid", *map(str, grid),
                "--worker", out,
            ]  # fmt: skip
            env = dict(os.environ, OMP_NUM_THREADS=str(max(1, 2 // processes)))
            subprocess.run(command, check=True, env=env, capture_output=True, timeout=1800)
            ranks = [json.loads(p.read_text()) for p in sorted(Path(out).glob("rank_*.json"))]
        peak = max(r["added_bytes"] for r in ranks)
        base = base or peak
        layers = len(ranks[0]["moved"]) // 2 or 1
        moved = sum(sum(r["moved"]) for r in ranks) / layers
        seconds = max(r["seconds"] for r in ranks)
        print(
            f"{processes:>2} {peak / 2**20:>15.0f} MB {peak / base:>6.2f} "
            f"{moved / 2**20:>17.1f} {_formula(grid, processes) / 2**20:>8.1f} {seconds:>7.2f}"
        )


if __name__ == "__main__":
    main()
