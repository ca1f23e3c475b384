"""Run by ``tests/test_domain_parallel.py`` under torchrun: every rank applies the sharded
layers to its shard and compares with the unsharded layer (values, input, weight and bias
gradients), writing one JSON line per case to ``OUT_DIR/rank_R.jsonl`` (argv[1])."""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from opflow.models import FNO, SFNO
from opflow.models.sharded import ShardedFNO
from opflow.spectral import SpectralConv
from opflow.spectral.sharded import ShardedSpectralConv, shard_bounds
from opflow.spectral.sphere import SphereGrid, SphericalConv
from opflow.spectral.sphere.sharded import ShardedSphericalConv

PLANE = [  # grid, n_modes, output_shape, dtype
    ((13, 16), (6, 6), None, torch.float64),
    ((13, 16), (6, 6), (20, 24), torch.float64),  # upsampled output, odd rows
    ((16, 12), (8, 6), (11, 8), torch.float32),  # downsampled, float32
    ((10, 8, 9), (4, 4, 4), None, torch.float64),
    ((12, 10, 8), (6, 4, 4), (9, 12, 6), torch.float64),
]
SPHERE = [  # grid, lmax, operator, output grid, dtype
    (SphereGrid(17, 32), 8, "diagonal", None, torch.float64),
    (SphereGrid(17, 32), 8, "isotropic", SphereGrid(33, 64), torch.float64),
    (SphereGrid(12, 24, "legendre-gauss"), 10, "diagonal", (16, 32), torch.float32),
]

FNOS = [  # FNO arguments (13 x 12 grid), dtype
    (dict(n_modes=(6, 6), hidden_channels=8, n_layers=3, positional_embedding="periodic"),
     torch.float64),
    (dict(n_modes=(8, 6), hidden_channels=8, n_layers=2), torch.float32),  # the x, y ramps
]  # fmt: skip


def _compare(conv, sharded, grid, output_shape, dtype, rank, size) -> dict:
    """The sharded layer on this rank's rows of a random field against ``conv`` on all of it."""
    shape = grid.shape if isinstance(grid, SphereGrid) else grid
    x = torch.randn(2, conv.in_channels, *shape, dtype=dtype, requires_grad=True)
    if isinstance(conv, SphericalConv):
        reference = conv(x, output_shape, grid)
    elif isinstance(conv, FNO | SFNO):
        reference = conv(x)
    else:
        reference = conv(x, output_shape=output_shape)
    seed = torch.randn_like(reference)
    (reference * seed).sum().backward()
    x_grad = x.grad
    grads = {name: p.grad.clone() for name, p in conv.named_parameters()}
    conv.zero_grad()
    lo, hi = shard_bounds(shape[0], size)[rank]
    out_lo, out_hi = shard_bounds(reference.shape[2], size)[rank]
    shard = x.detach()[:, :, lo:hi].clone().requires_grad_()
    y = sharded(shard, grid) if output_shape is None else sharded(shard, grid, output_shape)
    (y * seed[:, :, out_lo:out_hi]).sum().backward()
    for parameter in conv.parameters():  # each rank holds its points' and modes' share
        dist.all_reduce(parameter.grad)
    grad_error = max(
        ((p.grad - grads[name]).abs().max() / grads[name].abs().max().clamp_min(1e-30)).item()
        for name, p in conv.named_parameters()
    )
    return {
        "rows": [lo, hi],
        "output": (y - reference[:, :, out_lo:out_hi]).abs().max().item()
        / reference.abs().max().item(),
        "input_grad": (shard.grad - x_grad[:, :, lo:hi]).abs().max().item(),
        "parameter_grads": grad_error,  # max over parameters, relative to each one's largest
        "dtype": str(dtype),
    }


def main() -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    rank, size = dist.get_rank(), dist.get_world_size()
    results = []
    for index, (grid, modes, output_shape, dtype) in enumerate(PLANE):
        torch.manual_seed(index)  # the same layer, field and output gradient on every rank
        conv = SpectralConv(3, 5, modes).to(dtype)
        row = _compare(conv, ShardedSpectralConv(conv), grid, output_shape, dtype, rank, size)
        results.append({"case": f"plane {index}", "rank": rank, **row})
    for index, (grid, lmax, operator, output_shape, dtype) in enumerate(SPHERE):
        torch.manual_seed(100 + index)
        conv = SphericalConv(3, 5, lmax, operator=operator, grid=grid.kind).to(dtype)
        with torch.no_grad():
            conv.bias.normal_()  # zero at initialisation: make it count
        row = _compare(conv, ShardedSphericalConv(conv), grid, output_shape, dtype, rank, size)
        results.append({"case": f"sphere {index}", "rank": rank, **row})
    for index, (args, dtype) in enumerate(FNOS):
        torch.manual_seed(200 + index)
        model = FNO(in_channels=2, out_channels=1, **args).to(dtype)
        grid = (13, 12)
        row = _compare(model, ShardedFNO(model), grid, None, dtype, rank, size)
        results.append({"case": f"FNO {index}", "rank": rank, **row})
    torch.manual_seed(300)
    model = SFNO(2, 1, lmax=8, hidden_channels=8, n_layers=2, positional_embedding="xyz").double()
    row = _compare(model, ShardedFNO(model), (17, 32), None, torch.float64, rank, size)
    results.append({"case": "SFNO", "rank": rank, **row})
    lines = "".join(json.dumps(r) + "\n" for r in results)
    (Path(sys.argv[1]) / f"rank_{rank}.jsonl").write_text(lines)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
