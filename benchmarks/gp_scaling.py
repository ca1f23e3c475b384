"""Scaling: GP-HM cost per iteration as the 2-D collocation grid grows, Kronecker vs dense.

For an ``n × n`` grid (``N = n²`` unknowns) one GP-HM iteration factorizes the two per-axis
Gram matrices (``O(n³)``) and applies their solves and derivative matrices along each axis
(``O(N n)``) — never the ``N × N`` covariance. Measured here, on the 2-D Poisson problem
``u = sin 100x sin 100y`` with the Matérn × cosine kernel (Q = 30):

* ``kron`` — log-det + solve of ``K = K₁ ⊗ K₂`` from per-axis Cholesky factors (forward);
* ``iter`` — one full optimiser iteration (loss, backward, Adam step);
* ``colloc`` — one direct solve of the collocation equations (per-axis Sylvester);
* ``dense`` — the same log-det + solve from a Cholesky factor of the assembled ``N × N``
  matrix, where it fits (up to ``--dense-max``; its memory is reported where it does not);
* peak resident memory of a fresh process doing the Kronecker iterations at that size.

Medians over repeats, all in one run; the fitted exponent of time against ``N`` shows the
growth (Kronecker ~ N^1.5 = n³, dense ~ N³).

    python benchmarks/gp_scaling.py [--sizes 100 200 300 400] [--dense-sizes 20 40 60 80 100]
                                    [--repeats 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import resource
import statistics
import time

import numpy as np
import torch


def _problem():
    from opflow.gp import make_problem

    return make_problem("poisson", [(0, 2 * math.pi)] * 2, solution="sin(100*x)*sin(100*y)")


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def kronecker_timings(n: int, repeats: int, threads: int) -> dict:
    """Kronecker forward, full iteration and collocation solve at ``n × n``; peak RSS."""
    torch.set_num_threads(threads)
    from opflow.gp import KernelConfig
    from opflow.gp.collocation import collocation_solve
    from opflow.gp.model import build_gp
    from opflow.gp.solver import _boundary_mask, _loss, _mesh

    problem = _problem()
    model = build_gp(problem, [n, n], KernelConfig(), 1e-6)
    grid = _mesh([a.points for a in model.axes])
    source = problem.source(*grid)
    mask = _boundary_mask(model.shape)
    boundary_values = problem.boundary(*(g[mask] for g in grid))
    with torch.no_grad():
        model.values.copy_(torch.randn(n, n, dtype=torch.float64))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def forward():
        with torch.no_grad():
            gram = model.factorize()
            return gram.logdet(), gram.solve(model.values)

    def iteration():
        loss = _loss(model, problem, source, mask, boundary_values, 200.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def colloc():
        collocation_solve(problem, model, source, mask, boundary_values)

    return {
        "kron": _median_time(forward, repeats),
        "iter": _median_time(iteration, repeats),
        "colloc": _median_time(colloc, max(1, repeats // 2)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def dense_timing(n: int, repeats: int, threads: int) -> float:
    """Log-det + solve from the Cholesky factor of the assembled ``n² × n²`` covariance."""
    torch.set_num_threads(threads)
    from opflow.gp import KernelConfig
    from opflow.gp.model import build_gp

    model = build_gp(_problem(), [n, n], KernelConfig(), 1e-6)
    values = torch.randn(n * n, 1, dtype=torch.float64)
    with torch.no_grad():
        dense = model.factorize().dense()

        def forward():
            factor = torch.linalg.cholesky(dense)
            return 2 * factor.diagonal().log().sum(), torch.cholesky_solve(values, factor)

        return _median_time(forward, repeats)


def _in_fresh_process(fn, *args):
    with mp.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def _slope(sizes: list[int], times: list[float]) -> float:
    """Exponent p of time ∝ N^p (N = n²), least squares in log-log."""
    x = np.log(np.asarray(sizes, dtype=float) ** 2)
    return float(np.polyfit(x, np.log(times), 1)[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="*", type=int, default=[100, 200, 300, 400])
    parser.add_argument("--dense-sizes", nargs="*", type=int, default=[20, 40, 60, 80, 100])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    print(f"threads: {args.threads}, repeats: {args.repeats} (medians)\n")
    print(
        "| grid | N | kron log-det+solve (ms) | dense (ms) | dense / kron | full iteration (ms) "
        "| collocation solve (ms) | peak RSS (MB) | dense matrix (GB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    kron_sizes, kron_times, iter_times, dense_sizes, dense_times = [], [], [], [], []
    for n in sorted(set(args.sizes) | set(args.dense_sizes)):
        k = _in_fresh_process(kronecker_timings, n, args.repeats, args.threads)
        dense_gb = (n * n) ** 2 * 8 / 1e9
        dense = None
        if n in args.dense_sizes:
            dense = _in_fresh_process(dense_timing, n, max(1, args.repeats // 2), args.threads)
            dense_sizes.append(n)
            dense_times.append(dense)
        kron_sizes.append(n)
        kron_times.append(k["kron"])
        iter_times.append(k["iter"])
        dense_ms = f"{dense * 1e3:.1f}" if dense is not None else "not run"
        ratio = f"{dense / k['kron']:.0f}×" if dense is not None else "–"
        print(
            f"| {n}×{n} | {n * n} | {k['kron'] * 1e3:.2f} | {dense_ms} | {ratio} "
            f"| {k['iter'] * 1e3:.1f} | {k['colloc'] * 1e3:.0f} | {k['peak_rss_mb']:.0f} "
            f"| {dense_gb:.2f} |",
            flush=True,
        )
    # small grids are dominated by per-call overhead: fit the growth where the work dominates
    large = [i for i, n in enumerate(kron_sizes) if n >= 100]
    print("\nfitted exponent p (time ∝ N^p, N = n²):")
    if len(large) > 1:
        sizes = [kron_sizes[i] for i in large]
        kron = _slope(sizes, [kron_times[i] for i in large])
        full = _slope(sizes, [iter_times[i] for i in large])
        print(f"  Kronecker log-det+solve, n ≥ 100: {kron:.2f}; full iteration: {full:.2f}")
    if len(dense_sizes) > 1:
        print(f"  dense log-det+solve: {_slope(dense_sizes, dense_times):.2f}")
    print("  (per-axis factorizations: at most 1.5, i.e. n³; the dense matrix: 3, i.e. N³)")


if __name__ == "__main__":
    main()
