"""``opflow gp-solve CONFIG.yaml``: a GP-HM problem from a config file to files and plots.

The config (example: ``configs/gp/poisson1d_sin100x.yaml``)::

    name: poisson1d_sin100x
    problem:
      equation: poisson            # poisson | allen_cahn | advection
      domain: [[0, 2*pi]]          # numbers or constant expressions
      solution: sin(100*x)         # manufactured solution (gives f and the boundary data)
    collocation: [400]
    kernel: {base: matern52, n_components: 30, max_frequency: 20}
    solver: {iterations: 20000, lr: 0.01, lr_final: 0.0005}
    output_dir: runs/gp/poisson1d_sin100x

Writes into ``output_dir``: ``solution.nc`` (solution, exact solution and error on the test
grid), ``history.json`` (loss and error per logged iteration), ``state.safetensors`` with
``config.json`` (everything :func:`load_solution` needs to predict anywhere), and
``history.png`` / ``solution.png``. Every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np

from opflow.data.io import atomic_write_bytes, atomic_write_json, write_dataset
from opflow.errors import CheckpointError, ConfigError
from opflow.gp.expression import compile_expression
from opflow.gp.model import GridGP, KernelConfig, build_gp
from opflow.gp.pde import PDEProblem, make_problem
from opflow.gp.solver import GPSolution, SolverOptions, solve
from opflow.schema import apply_overrides, from_dict, load_yaml, to_dict

__all__ = ["ProblemConfig", "GPConfig", "load_gp_config", "run", "load_solution"]


@dataclasses.dataclass
class ProblemConfig:
    """The PDE (see :func:`opflow.gp.pde.make_problem`); domain bounds may be ``"2*pi"``."""

    equation: Literal["poisson", "allen_cahn", "advection"]
    domain: list[list[float | str]]
    solution: str | None = None
    source: str | None = None
    boundary: str | None = None
    beta: float = 1.0

    def build(self, name: str) -> PDEProblem:
        domain = []
        for i, bounds in enumerate(self.domain):
            if len(bounds) != 2:
                raise ConfigError(
                    f"problem.domain[{i}] = {bounds}", "[low, high]", "give two bounds per axis"
                )
            domain.append(tuple(_number(b) for b in bounds))
        return make_problem(
            self.equation, domain, self.solution, self.source, self.boundary, self.beta, name
        )


def _number(value: float | str) -> float:
    return float(value) if not isinstance(value, str) else compile_expression(value, ())()


@dataclasses.dataclass
class GPConfig:
    name: str
    problem: ProblemConfig
    collocation: list[int]
    kernel: KernelConfig = dataclasses.field(default_factory=KernelConfig)
    solver: SolverOptions = dataclasses.field(default_factory=SolverOptions)
    test_points: int = 300
    output_dir: str = "runs/gp/run"


def load_gp_config(path: str | Path, overrides: list[str] | None = None) -> GPConfig:
    """Read and check a GP config, applying ``key.sub=value`` overrides."""
    data = apply_overrides(load_yaml(path), overrides or [])
    return from_dict(GPConfig, data)


def run(config: GPConfig, progress: bool | None = None) -> tuple[GPSolution, Path]:
    """Solve the configured problem and write the results into ``config.output_dir``."""
    problem = config.problem.build(config.name)
    solution = solve(
        problem, config.collocation, config.kernel, config.solver, config.test_points, progress
    )
    out = Path(config.output_dir)
    write_dataset(solution.to_xarray(config.test_points), out / "solution.nc")
    atomic_write_json(out / "history.json", solution.history)
    atomic_write_json(out / "config.json", to_dict(config))
    atomic_write_bytes(out / "state.safetensors", _state_bytes(solution.model))
    _plot(solution, config, out)
    return solution, out


def _state_bytes(model: GridGP) -> bytes:
    from safetensors.torch import save

    return save({k: v.detach().contiguous() for k, v in model.state_dict().items()})


def load_solution(run_dir: str | Path) -> GPSolution:
    """The solved GP of a finished ``gp-solve`` run, ready to :meth:`GPSolution.predict`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    config_path, state_path = run_dir / "config.json", run_dir / "state.safetensors"
    if not (config_path.is_file() and state_path.is_file()):
        raise CheckpointError(
            f"{run_dir} has no finished GP solve",
            "config.json and state.safetensors written by opflow gp-solve",
            "run opflow gp-solve first or check the path",
        )
    config = from_dict(GPConfig, json.loads(config_path.read_text()))
    problem = config.problem.build(config.name)
    model = build_gp(problem, config.collocation, config.kernel, config.solver.jitter)
    try:
        state = load_file(state_path)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(
            f"{state_path} is unreadable: {err}", "a safetensors file", "re-run the solve"
        ) from None
    model.load_state_dict(state)
    history_path = run_dir / "history.json"
    history = json.loads(history_path.read_text()) if history_path.is_file() else []
    return GPSolution(problem, model, history)


def _plot(solution: GPSolution, config: GPConfig, out: Path) -> None:
    from matplotlib.figure import Figure  # no pyplot: no global backend switch

    from opflow.evaluate.plots import plot_fields

    history = solution.history
    its = [h["iteration"] for h in history]
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.semilogy(its, [abs(h["loss"]) for h in history], label="|loss|")
    ax.set_xlabel("iteration")
    if "rel_l2" in history[0]:
        twin = ax.twinx()
        twin.semilogy(its, [h["rel_l2"] for h in history], color="C3", label="rel. L2 error")
        twin.set_ylabel("relative L2 error (test grid)", color="C3")
    ax.set_ylabel("|loss|")
    ax.set_title(f"{config.name}: GP-HM optimisation")
    fig.savefig(out / "history.png", dpi=110)

    ds = solution.to_xarray(config.test_points)
    if "u_exact" not in ds:
        return
    if solution.problem.ndim == 2:
        extent = [float(ds.x[0]), float(ds.x[-1]), float(ds.y[0]), float(ds.y[-1])]
        title = f"{config.name}: relative L2 {ds.attrs['rel_l2']:.2e}"
        # rows of the image are y, columns x
        rows = [("GP-HM", ds.u.values.T, ds.u_exact.values.T)]
        plot_fields(rows, out / "solution.png", title, "u", extent)
        return
    fig = Figure(figsize=(8, 5), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    top.plot(ds.x, ds.u_exact, "k-", lw=1, label="exact")
    top.plot(ds.x, ds.u, "C3--", lw=1, label="GP-HM")
    top.legend()
    bottom.plot(ds.x, np.abs(ds.error), "C0")
    bottom.set_yscale("log")
    bottom.set_ylabel("|error|")
    bottom.set_xlabel("x")
    top.set_title(f"{config.name}: relative L2 {ds.attrs['rel_l2']:.2e}")
    fig.savefig(out / "solution.png", dpi=110)
