"""Run by ``tests/test_domain_parallel.py`` under torchrun: every rank applies a
ShardedSpectralConv to its shard and compares with the unsharded SpectralConv (values, input
and weight gradients), writing one JSON line per case to ``OUT_DIR/rank_R.jsonl`` (argv[1])."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from opflow.spectral import SpectralConv
from opflow.spectral.sharded import ShardedSpectralConv, shard_bounds

CASES = [  # grid, n_modes, output_shape, dtype
    ((13, 16), (6, 6), None, torch.float64),
    ((13, 16), (6, 6), (20, 24), torch.float64),  # upsampled output, odd rows
    ((16, 12), (8, 6), (11, 8), torch.float32),  # downsampled, float32
    ((10, 8, 9), (4, 4, 4), None, torch.float64),
    ((12, 10, 8), (6, 4, 4), (9, 12, 6), torch.float64),
]


def main() -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, size = dist.get_rank(), dist.get_world_size()
    results = []
    for index, (grid, modes, output_shape, dtype) in enumerate(CASES):
        torch.manual_seed(index)  # the same layer, field and output gradient on every rank
        conv = SpectralConv(3, 5, modes).to(dtype)
        x = torch.randn(2, 3, *grid, dtype=dtype, requires_grad=True)
        out_grid = output_shape or grid
        seed = torch.randn(2, 5, *out_grid, dtype=dtype)
        reference = conv(x, output_shape=output_shape)
        (reference * seed).sum().backward()
        x_grad, w_grad, b_grad = x.grad, conv.weight.grad.clone(), conv.bias.grad.clone()
        conv.zero_grad()
        lo, hi = shard_bounds(grid[0], size)[rank]
        out_lo, out_hi = shard_bounds(out_grid[0], size)[rank]
        shard = x.detach()[:, :, lo:hi].clone().requires_grad_()
        y = ShardedSpectralConv(conv)(shard, grid, output_shape)
        (y * seed[:, :, out_lo:out_hi]).sum().backward()
        for grad in (conv.weight.grad, conv.bias.grad):  # each rank holds its modes' share
            dist.all_reduce(grad)
        scale = reference.abs().max().item()
        results.append(
            {
                "case": index,
                "rank": rank,
                "rows": [lo, hi],
                "output": (y - reference[:, :, out_lo:out_hi]).abs().max().item() / scale,
                "input_grad": (shard.grad - x_grad[:, :, lo:hi]).abs().max().item(),
                "weight_grad": (conv.weight.grad - w_grad).abs().max().item(),
                "bias_grad": (conv.bias.grad - b_grad).abs().max().item(),
                "dtype": str(dtype),
            }
        )
    lines = "".join(json.dumps(r) + "\n" for r in results)
    (Path(sys.argv[1]) / f"rank_{rank}.jsonl").write_text(lines)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
