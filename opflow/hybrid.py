r"""Hybrid runs: a trained surrogate coupled with a numerical solver.

Both sides are **propagators**: callables that advance a batch of states by one time slice,
``(B, C, *s) -> (B, C, *s)``. :func:`surrogate_propagator` makes one of an
:class:`opflow.Surrogate`; :class:`NavierStokesPropagator` of opflow's Navier–Stokes solver;
any solver wrapped in a Python function is one too.

* :func:`anchored_rollout` steps with the surrogate and lets the solver take every ``k``-th
  step, bringing the state back onto the solver's dynamics (its dissipation and constraints)
  before the surrogate's drift grows.
* :func:`parareal` (Lions, Maday & Turinici 2001) uses the surrogate as the coarse propagator
  ``G`` and the solver as the fine one ``F`` over ``N`` slices:

  .. math::

      U^{k}_{n+1} = G(U^{k}_{n}) + F(U^{k-1}_{n}) - G(U^{k-1}_{n}), \qquad U^{k}_0 = u_0 .

  The fine solves of an iteration are independent of each other: they run as one batch, or
  in ``workers`` processes. After ``k`` iterations the first ``k`` slices equal the fine
  solver's serial trajectory exactly, so it converges to *the solver's answer*, not the
  surrogate's; with an accurate ``G`` in far fewer than ``N`` iterations, so the wall time is
  about ``K`` fine slices instead of ``N`` when ``N`` workers are available.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor

import torch

from opflow.errors import ConfigError, ShapeError
from opflow.solvers import navier_stokes
from opflow.spectral import fourier_resample

__all__ = [
    "NavierStokesPropagator",
    "PararealResult",
    "Propagator",
    "anchored_rollout",
    "conserve_mean",
    "on_grid",
    "parareal",
    "surrogate_propagator",
]

Propagator = Callable[[torch.Tensor], torch.Tensor]


def surrogate_propagator(
    surrogate, constraint: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
) -> Propagator:
    """An :class:`opflow.Surrogate` of a state-to-state task (the same variables in and out,
    ``t_in = 1``) as a propagator; it computes in its own dtype and returns the input's.

    ``constraint(state, prediction) -> prediction`` enforces what the solver conserves, e.g.
    :func:`conserve_mean`. Parareal needs it: an invariant the solver keeps exactly is a mode
    it neither damps nor amplifies, and a surrogate's error there is carried one slice per
    iteration instead of shrinking (Navier–Stokes on the torus: all ``N`` iterations without
    it, 5 of 10 with it, ``benchmarks/RESULTS.md``).
    """
    task = surrogate.task
    one_step = task.t_out == 1 or task.rollout
    if task.t_in != 1 or task.input_variables != task.output_variables or not one_step:
        raise ShapeError(
            f"a surrogate of {task.input_variables} x {task.t_in} steps -> "
            f"{task.output_variables} x {task.t_out} steps as a propagator",
            "a state-to-state surrogate: the same variables in and out, t_in = 1, one step "
            "out (t_out = 1, or a rollout model)",
            "train with data.t_in: 1, data.t_out: 1 and no separate output_variables",
        )

    def propagate(state: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            prediction = surrogate.predict(state, steps=1).to(state.device, state.dtype)
        return prediction if constraint is None else constraint(state, prediction)

    return propagate


def conserve_mean(state: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """``prediction`` ``(B, C, *s)`` with each channel's spatial mean set to ``state``'s: for
    fields whose mean the dynamics conserve (vorticity on a periodic domain under zero-mean
    forcing, as :mod:`opflow.solvers.navier_stokes`). Uniform grids: the mean is the average."""
    axes = tuple(range(2, state.ndim))
    return prediction - prediction.mean(axes, keepdim=True) + state.mean(axes, keepdim=True)


def on_grid(propagator: Propagator, grid: tuple[int, ...]) -> Propagator:
    """``propagator`` run on ``grid``: periodic states are restricted to it and the result
    brought back to the caller's grid by trigonometric interpolation (both ways
    :func:`opflow.spectral.fourier_resample`). A cheaper coarse propagator for parareal
    (spatial coarsening, as in Ruprecht 2014): the fine solver keeps the full grid."""

    def propagate(state: torch.Tensor) -> torch.Tensor:
        return fourier_resample(propagator(fourier_resample(state, grid)), state.shape[2:])

    return propagate


@dataclasses.dataclass(frozen=True)
class NavierStokesPropagator:
    """One slice of ``interval`` time units of :func:`opflow.solvers.navier_stokes.solve`:
    vorticity ``(B, 1, n, n)`` -> ``(B, 1, n, n)``.

    ``dt`` is fixed: a propagator must be the same function of each state whatever else is in
    its batch (the solver's CFL rule would pick the step from the batch's fastest flow), which
    parareal's exactness needs. ``forcing``: ``"fno"`` (FNO's forcing, as the recipes) or
    ``None``. A plain dataclass, so it pickles into worker processes.
    """

    viscosity: float
    interval: float
    dt: float
    forcing: str | None = "fno"

    def __call__(self, state: torch.Tensor) -> torch.Tensor:
        if state.ndim != 4 or state.shape[1] != 1:
            raise ShapeError(
                f"Navier–Stokes propagator got a state of shape {tuple(state.shape)}",
                "vorticity (batch, 1, n, n)",
                "stack the states as one channel",
            )
        n = state.shape[-1]
        forcing = navier_stokes.default_forcing(n, state.dtype) if self.forcing == "fno" else None
        records = navier_stokes.solve(
            state[:, 0], self.viscosity, self.interval, 1, forcing=forcing, dt=self.dt
        )
        return records  # (B, 1, n, n): the one record is the channel


def anchored_rollout(
    coarse: Propagator, fine: Propagator, state: torch.Tensor, steps: int, anchor_every: int
) -> torch.Tensor:
    """``steps`` slices from ``state`` ``(B, C, *s)``: step ``j`` (1-based) by ``fine`` when
    ``j`` is a multiple of ``anchor_every``, by ``coarse`` otherwise. Returns
    ``(B, steps, C, *s)``; the fine solver's share of the cost is ``1 / anchor_every``."""
    if anchor_every < 1 or steps < 1:
        raise ConfigError(
            f"anchored_rollout(steps={steps}, anchor_every={anchor_every})",
            "positive integers",
            "anchor_every=1 is the solver alone, a value above steps the surrogate alone",
        )
    states = []
    for j in range(1, steps + 1):
        state = (fine if j % anchor_every == 0 else coarse)(state)
        states.append(state)
    return torch.stack(states, dim=1)


@dataclasses.dataclass
class PararealResult:
    trajectory: torch.Tensor  # (B, N, C, *s): the states at the end of slices 1..N
    iterations: int  # parareal iterations run (each one round of parallel fine solves)
    converged: bool  # the last iteration changed the trajectory by less than tol
    updates: list[float]  # per iteration: max over slices of |U^k - U^{k-1}| / |U^k|
    fine_solves: int  # fine slice solves in total (in series: ``iterations``)


def parareal(
    coarse: Propagator,
    fine: Propagator,
    state: torch.Tensor,
    slices: int,
    tol: float = 1e-6,
    max_iterations: int | None = None,
    workers: int = 1,
) -> PararealResult:
    """Parareal over ``slices`` time slices from ``state`` ``(B, C, *s)``.

    Stops when an iteration changes no slice by more than ``tol`` (relative, per sample) or
    after ``max_iterations`` (default ``slices``: by then it is exact). The fine solves of an
    iteration run as one batch (``workers=1``) or split over ``workers`` processes, each
    limited to ``max(1, threads // workers)`` threads; ``fine`` must then pickle (a module-level
    function or a dataclass such as :class:`NavierStokesPropagator`), and a script that calls
    this must guard its entry point with ``if __name__ == "__main__":`` (the workers are
    spawned and import it). Slices already exact (the first ``k`` after iteration ``k``) are not
    solved again.
    """
    if slices < 1 or workers < 1:
        raise ConfigError(
            f"parareal(slices={slices}, workers={workers})",
            "at least one slice and one worker",
            "pass positive integers",
        )
    max_iterations = slices if max_iterations is None else max_iterations
    pool = _FinePool(fine, workers)
    try:
        # iteration 0: the coarse propagator alone, in series
        coarse_prev = [coarse(state)]
        for _ in range(slices - 1):
            coarse_prev.append(coarse(coarse_prev[-1]))
        trajectory = [state, *coarse_prev]  # U_0 .. U_N
        updates, fine_solves, converged, k = [], 0, False, 0
        for k in range(1, max_iterations + 1):
            # fine solves from U_{k-1} .. U_{N-1}: independent, one parallel round
            starts = torch.cat(trajectory[k - 1 : slices])
            fine_now = pool.map(starts).chunk(slices - k + 1)
            fine_solves += slices - k + 1
            new = trajectory[:k] + [fine_now[0]]  # U_k is exact now: F of an exact U_{k-1}
            for n in range(k + 1, slices + 1):  # the correction sweep, in series, cheap
                predicted = coarse(new[n - 1])
                new.append(predicted + fine_now[n - k] - coarse_prev[n - 1])
                coarse_prev[n - 1] = predicted
            update = max(_relative_change(a, b) for a, b in zip(new[k:], trajectory[k:]))
            updates.append(update)
            trajectory = new
            if update < tol:
                converged = True
                break
    finally:
        pool.close()
    return PararealResult(
        torch.stack(trajectory[1:], dim=1), k, converged or k == slices, updates, fine_solves
    )


def _relative_change(new: torch.Tensor, old: torch.Tensor) -> float:
    """Max over the batch of ``|new - old| / |new|`` (L2 over each sample's state)."""
    difference = (new - old).flatten(1).norm(dim=1)
    return float((difference / new.flatten(1).norm(dim=1).clamp_min(1e-30)).max())


class _FinePool:
    """The fine propagator over a stack of states: in this process, or split over worker
    processes (spawned: a fork of a process that has run torch's thread pools can hang)."""

    def __init__(self, fine: Propagator, workers: int):
        self.fine, self.workers, self.executor = fine, workers, None
        if workers > 1:
            threads = max(1, torch.get_num_threads() // workers)
            self.executor = ProcessPoolExecutor(
                workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=torch.set_num_threads,
                initargs=(threads,),
            )

    def map(self, states: torch.Tensor) -> torch.Tensor:
        if self.executor is None:
            return self.fine(states)
        parts = states.chunk(min(self.workers, states.shape[0]))
        return torch.cat(list(self.executor.map(self.fine, parts)))

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(cancel_futures=True)
