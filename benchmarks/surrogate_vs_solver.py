"""A trained surrogate against the solver it learned from, and the two together (parareal).

Two parts, in one run on this machine, same threads for both sides:

* ``speed``: opflow's Navier–Stokes solver (ν = 1e-3, the quickstart's: CFL-chosen steps,
  as the recipes) and the quickstart FNO (``configs/quickstart.yaml``, trained at 64²) on
  the same 8 states at 64², 128² and 256² — states at t = 1 of fresh random fields, solved
  at each grid. Prints seconds per simulated time unit of each (median of 3), their ratio,
  and the surrogate's one-step relative L2 error against the solver at that grid.
* ``parareal``: ``opflow.hybrid.parareal`` with a surrogate as coarse propagator and the
  solver (fixed step) as the fine one, over N = 10 slices of one time unit from t = 1, for
  two flows: ν = 1e-2 at 32² (an FNO trained here on 128 trajectories, 40 epochs) and the
  quickstart's ν = 1e-3 at 64², and the ν = 1e-2 surrogate kept on 32² (``on_grid``) as the
  coarse propagator of a 128² solve. For each, with and without ``conserve_mean``: iterations to
  an update below 1e-6, the error against the serial fine solve, fine solves in series
  (= iterations) and in total, and wall time with the fine solves batched in-process and in
  2 worker processes (spawned per call: their start-up is in the figure) against the plain
  serial fine solve. "N workers" projects the speed-up with one worker per slice: iterations
  x one fine slice (serial time / N) + the coarse sweeps as measured.

    python benchmarks/surrogate_vs_solver.py [--parts speed parareal] [--out bench_hybrid]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import opflow
from opflow.data.recipes import generate, load_recipe, output_paths
from opflow.hybrid import (
    NavierStokesPropagator,
    conserve_mean,
    on_grid,
    parareal,
    surrogate_propagator,
)
from opflow.solvers import navier_stokes
from opflow.train import load_config, train

ROOT = Path(__file__).resolve().parent.parent
BATCH, SLICES, REPEATS = 8, 10, 3

SMOOTH_RECIPE = """\
name: hybrid_nu1e-2
equation: navier_stokes
viscosity: 1.0e-2
resolutions: [32]
n_samples: 128
n_records: 10
record_interval: 1.0
seed: 5
dtype: float32
batch_size: 128
"""


def _quickstart_surrogate(out: Path) -> opflow.Surrogate:
    recipe = load_recipe(ROOT / "datasets/navier_stokes_1e-3_quickstart.yaml")
    paths = output_paths(recipe, out / "data" / "ns.nc")
    if not paths[64].exists():
        generate(recipe, out / "data" / "ns.nc", progress=False)
    overrides = [f"data.path={paths[64]}", f"training.output_dir={out / 'quickstart_run'}"]
    config = load_config(ROOT / "configs/quickstart.yaml", overrides)
    return opflow.load(train(config, resume="if-present", progress=False))


def _smooth_surrogate(out: Path) -> opflow.Surrogate:
    """ν = 1e-2 at 32²: the quickstart FNO's architecture, 128 trajectories, 40 epochs."""
    (out / "smooth.yaml").write_text(SMOOTH_RECIPE)
    data = out / "data" / "smooth.nc"
    if not data.exists():
        generate(load_recipe(out / "smooth.yaml"), data, progress=False)
    overrides = [
        f"data.path={data}",
        "data.time_start=0",
        "data.split={train: 120, val: 4, test: 4}",
        "training.epochs=40",
        f"training.output_dir={out / 'smooth_run'}",
    ]
    config = load_config(ROOT / "configs/quickstart.yaml", overrides)
    return opflow.load(train(config, resume="if-present", progress=False))


def _states_at_t1(n: int, viscosity: float, seed: int = 1) -> torch.Tensor:
    """``BATCH`` random fields solved to t = 1 at ``n``², float64 ``(B, n, n)``."""
    generator = torch.Generator().manual_seed(seed)
    w0 = navier_stokes.gaussian_random_field(BATCH, n, generator=generator)
    forcing = navier_stokes.default_forcing(n)
    return navier_stokes.solve(w0, viscosity, 1.0, 1, forcing=forcing)[:, 0]


def _median_seconds(call) -> float:
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _relative_l2(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    diff = (prediction - truth).flatten(1).norm(dim=1) / truth.flatten(1).norm(dim=1)
    return float(diff.mean())


def speed(out: Path) -> None:
    surrogate = _quickstart_surrogate(out)
    print(f"speed: ν = 1e-3, {BATCH} states, one time unit, {torch.get_num_threads()} threads")
    print(f"{'grid':>6} {'solver s/unit':>14} {'FNO s/unit':>11} {'ratio':>7} {'FNO rel. L2':>12}")
    for n in (64, 128, 256):
        states = _states_at_t1(n, 1e-3)
        forcing = navier_stokes.default_forcing(n)
        truth = navier_stokes.solve(states, 1e-3, 1.0, 1, forcing=forcing)[:, 0]
        x = states[:, None].float()
        with torch.no_grad():
            solver_s = _median_seconds(
                lambda s=states, f=forcing: navier_stokes.solve(s, 1e-3, 1.0, 1, forcing=f)
            )
            fno_s = _median_seconds(lambda x=x: surrogate.predict(x))
            error = _relative_l2(surrogate.predict(x)[:, 0].double(), truth)
        print(f"{n:>4}² {solver_s:>14.3f} {fno_s:>11.4f} {solver_s / fno_s:>6.0f}x {error:>12.4f}")


def _parareal_case(
    name: str, surrogate, viscosity: float, n: int, dt: float, coarse_grid: int | None = None
) -> None:
    fine = NavierStokesPropagator(viscosity, 1.0, dt)
    w0 = _states_at_t1(n, viscosity)[:, None]
    started = time.perf_counter()
    reference = navier_stokes.solve(
        w0[:, 0], viscosity, 1.0, SLICES, forcing=navier_stokes.default_forcing(n), dt=dt
    )
    serial_s = time.perf_counter() - started
    for constraint, label in ((conserve_mean, "conserve_mean"), (None, "no constraint")):
        coarse_seconds = [0.0]
        propagate = surrogate_propagator(surrogate, constraint)
        if coarse_grid is not None:
            propagate = on_grid(propagate, (coarse_grid, coarse_grid))

        def coarse(state, propagate=propagate, spent=coarse_seconds):
            started = time.perf_counter()
            result = propagate(state)
            spent[0] += time.perf_counter() - started
            return result

        for workers in (1, 2):
            coarse_seconds[0] = 0.0
            started = time.perf_counter()
            result = parareal(coarse, fine, w0, SLICES, tol=1e-6, workers=workers)
            seconds = time.perf_counter() - started
            diff = (result.trajectory[:, :, 0] - reference).flatten(2).norm(dim=2)
            error = float((diff / reference.flatten(2).norm(dim=2)).max())
            state = "" if result.updates[-1] < 1e-6 else " (exact by exhaustion)"
            # with one worker per slice an iteration costs one fine slice, plus the coarse sweeps
            projected = result.iterations * serial_s / SLICES + coarse_seconds[0]
            print(
                f"{name:<22} {label:<14} {workers:>7} {result.iterations:>3}/{SLICES}{state:<22}"
                f" {error:>9.1e} {result.fine_solves:>6} {seconds:>8.2f} {serial_s:>8.2f}"
                f" {serial_s / seconds:>6.2f}x {serial_s / projected:>9.2f}x"
            )


def parareal_part(out: Path) -> None:
    print(f"parareal: {SLICES} slices of one time unit from t = 1, {BATCH} states, tol 1e-6")
    print(
        f"{'flow':<22} {'coarse':<14} {'workers':>7} {'iters':>6}{'':<22} {'err/fine':>9}"
        f" {'F solves':>6} {'wall s':>8} {'serial s':>8} {'speed-up':>7} {'N workers':>9}"
    )
    smooth = _smooth_surrogate(out)
    _parareal_case("ν=1e-2, 32²", smooth, 1e-2, 32, 1 / 64)
    _parareal_case("ν=1e-2, F 128² G 32²", smooth, 1e-2, 128, 1 / 256, coarse_grid=32)
    _parareal_case("ν=1e-3, 64² (qs)", _quickstart_surrogate(out), 1e-3, 64, 1 / 128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["speed", "parareal"])
    parser.add_argument("--out", default="bench_hybrid")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if "speed" in args.parts:
        speed(out)
    if "parareal" in args.parts:
        parareal_part(out)


if __name__ == "__main__":
    main()
