"""Accuracy: GP-HM vs a plain SE-kernel GP vs a PINN on the GP-HM paper's problems.

Every problem is a recipe in ``configs/gp/`` (equation, domain, manufactured solution,
collocation grid, kernel, budget). For each one:

* **GP-HM**: the recipe as it is (``opflow.gp``: Matérn-5/2 × cosine spectral mixture,
  Q = 30, per-axis Kronecker algebra; ``U`` from the collocation equations, re-solved as
  the kernel learns; state chosen by the off-grid PDE residual, never by the test error);
* **SE-GP**: the same solver and budget with the kernel swapped for one squared-exponential
  (no frequencies: ``n_components=1, max_frequency=0``), the paper's GP-SE baseline;
* **PINN**: a tanh MLP (4 × 64) trained with Adam (lr 1e-3) on the same collocation points
  — residual at the interior points (normalised by the RMS of f), boundary misfit × 10 —
  for the same wall time as GP-HM took (2-D: minibatches of 8192 interior points).

Relative L2 error on a uniform test grid of 300 (1-D) or 300 × 300 (2-D) points, both ends
included. ``--protocol paper`` runs GP-HM as the paper does instead: ``U`` from zero, Adam on
everything (``--iterations`` to set the budget).

    python benchmarks/gp_accuracy.py [--problems NAME ...] [--methods gp-hm se-gp pinn]
                                     [--protocol opflow|paper] [--iterations N]
                                     [--pinn-seconds S] [--pinn-batch 8192]
                                     [--threads 2] [--out bench_gp]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch
from torch import nn

from opflow.data.io import atomic_write_json
from opflow.gp import KernelConfig, solve
from opflow.gp.pde import apply_terms, derivative
from opflow.gp.run import GPConfig, load_gp_config
from opflow.gp.solver import _boundary_mask, relative_l2, test_axes

ROOT = Path(__file__).resolve().parent.parent
SE_KERNEL = KernelConfig(base="gaussian", n_components=1, max_frequency=0.0, learn_frequency=False)


def run_gp(config: GPConfig, kernel: KernelConfig | None = None, **solver) -> dict:
    problem = config.problem.build(config.name)
    options = dataclasses.replace(config.solver, **solver)
    result = solve(
        problem, config.collocation, kernel or config.kernel, options, config.test_points, False
    )
    ds = result.to_xarray(config.test_points)
    return {
        "rel_l2": ds.attrs["rel_l2"],
        "iterations": options.iterations,
        "seconds": result.seconds,
        "selected_iteration": result.selected_iteration,
    }


class MLP(nn.Module):
    def __init__(self, dim: int, width: int = 64, depth: int = 4):
        super().__init__()
        layers, size = [], dim
        for _ in range(depth):
            layers += [nn.Linear(size, width, dtype=torch.float64), nn.Tanh()]
            size = width
        layers.append(nn.Linear(size, 1, dtype=torch.float64))
        self.net = nn.Sequential(*layers)

    def forward(self, *coordinates: torch.Tensor) -> torch.Tensor:
        return self.net(torch.stack(coordinates, -1)).squeeze(-1)


def run_pinn(config: GPConfig, seconds: float, seed: int = 0, batch: int = 8192) -> dict:
    """A PINN on the recipe's collocation grid for ``seconds`` of wall time."""
    torch.manual_seed(seed)
    problem = config.problem.build(config.name)
    axes = [
        torch.linspace(lo, hi, n, dtype=torch.float64)
        for (lo, hi), n in zip(problem.domain, config.collocation)
    ]
    grid = torch.meshgrid(*axes, indexing="ij")
    mask = _boundary_mask(tuple(config.collocation))
    interior = [g[~mask] for g in grid]
    boundary = [g[mask] for g in grid]
    boundary_values = problem.boundary(*boundary)
    source = problem.source(*interior)
    scale = source.pow(2).mean().sqrt().clamp_min(1.0)
    # inputs mapped to [-1, 1] per axis, the usual PINN conditioning
    lows = [lo for lo, _ in problem.domain]
    widths = [hi - lo for lo, hi in problem.domain]
    model = MLP(problem.ndim)

    def network(*coordinates):
        return model(*(2 * (c - lo) / w - 1 for c, lo, w in zip(coordinates, lows, widths)))

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    start, iterations = time.perf_counter(), 0
    n_interior = interior[0].numel()
    while time.perf_counter() - start < seconds:
        pick = torch.randint(n_interior, (batch,)) if n_interior > batch else slice(None)
        points = tuple(c[pick].clone().requires_grad_(True) for c in interior)
        values = network(*points)
        derivs = {a: derivative(values, points, a) for a in problem.derivatives}
        residual = (apply_terms(problem.terms, derivs) - source[pick]) / scale
        loss = residual.pow(2).mean() + 10.0 * (network(*boundary) - boundary_values).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        iterations += 1
    test = test_axes(problem, config.test_points)
    mesh = torch.meshgrid(*test, indexing="ij")
    with torch.no_grad():
        prediction = network(*mesh)
    return {
        "rel_l2": relative_l2(prediction, problem.solution(*mesh)),
        "iterations": iterations,
        "seconds": time.perf_counter() - start,
    }


def cell(row: dict, method: str, keys: tuple[str, ...]) -> str:
    """Markdown cells of one method's figures (dashes if it was not run)."""
    if method not in row:
        return " | ".join("–" for _ in keys)
    fmt = {"rel_l2": "{:.2e}", "iterations": "{:d}", "seconds": "{:.0f}"}
    return " | ".join(fmt[k].format(row[method][k]) for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", nargs="*", help="recipe names (default: all)")
    parser.add_argument("--methods", nargs="*", default=["gp-hm", "se-gp", "pinn"])
    parser.add_argument("--protocol", choices=["opflow", "paper"], default="opflow")
    parser.add_argument("--iterations", type=int, help="override every recipe's budget")
    parser.add_argument("--pinn-seconds", type=float, help="PINN wall time (default: GP-HM's)")
    parser.add_argument("--pinn-batch", type=int, default=8192, help="interior points per step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="bench_gp")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    paths = sorted((ROOT / "configs" / "gp").glob("*.yaml"))
    if args.problems:
        paths = [p for p in paths if p.stem in args.problems]
    out = Path(args.out)
    results = {}
    header = (
        f"| problem | grid | GP-HM rel. L2 | iters | s | SE-GP rel. L2 | s "
        f"| PINN rel. L2 | iters | s |\n|{'---|' * 10}"
    )
    print(f"protocol: {args.protocol}, threads: {args.threads}\n{header}", flush=True)
    for path in paths:
        config = load_gp_config(path)
        overrides = {} if args.iterations is None else {"iterations": args.iterations}
        if args.protocol == "paper":
            overrides |= {"init": "zeros", "lr_values": None, "recollocate_every": 0}
        row = {}
        if "gp-hm" in args.methods:
            row["gp-hm"] = run_gp(config, **overrides)
        if "se-gp" in args.methods:
            row["se-gp"] = run_gp(config, SE_KERNEL, **overrides)
        if "pinn" in args.methods:
            budget = args.pinn_seconds or row.get("gp-hm", {}).get("seconds", 60.0)
            row["pinn"] = run_pinn(config, budget, batch=args.pinn_batch)
        results[config.name] = row

        grid = "×".join(str(n) for n in config.collocation)
        print(
            f"| {config.name} | {grid} | {cell(row, 'gp-hm', ('rel_l2', 'iterations', 'seconds'))} "
            f"| {cell(row, 'se-gp', ('rel_l2', 'seconds'))} "
            f"| {cell(row, 'pinn', ('rel_l2', 'iterations', 'seconds'))} |",
            flush=True,
        )
        atomic_write_json(out / f"gp_accuracy_{args.protocol}.json", results)
    print(f"\nresults: {out / f'gp_accuracy_{args.protocol}.json'}")


if __name__ == "__main__":
    main()
