r"""GP-HM: solve a PDE with a Gaussian process whose kernel is a spectral mixture (Fang et al.).

The unknowns are the solution values ``U`` on a tensor grid of collocation points. Under the
GP prior ``vec(U) ~ N(0, K)`` with ``K = K_1 ⊗ … ⊗ K_D``, the GP conditional mean gives every
derivative on the grid per axis,

.. math::

    \partial^{\alpha} U = U \times_1 (K_1^{(\alpha_1)} K_1^{-1}) \cdots \times_D
    (K_D^{(\alpha_D)} K_D^{-1}),

(an axis with ``α_d = 0`` is left as is), so the residual ``r = Σ c (∂^α U)^p − f`` is a few
``n_d × n_d`` products. The loss is the negative log joint of prior, boundary fit and
residual fit, with learned precisions ``τ`` (boundary) and ``v`` (residual)::

    ½ log det K + ½ vec(U)ᵀ K⁻¹ vec(U)
      + λ_b (½ τ ‖U_∂ − g‖² − ½ N_∂ log τ)
      + ½ v ‖r‖² − ½ N log v

minimised over ``U``, the kernel parameters, ``log τ`` and ``log v`` by Adam in float64.
The solution anywhere is the GP mean ``u(x) = Π_d k_d(x_d − X_d) ⋅ K⁻¹ U``
(:meth:`GPSolution.predict`): resolution-free.

This module knows nothing of files; :mod:`opflow.gp.run` reads configs and writes results.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from opflow.errors import ConfigError, ShapeError
from opflow.gp.collocation import collocation_solve
from opflow.gp.model import GridGP, KernelConfig, build_gp
from opflow.gp.pde import VARIABLES, PDEProblem, apply_terms
from opflow.norms import relative_lp_per_sample

__all__ = ["SolverOptions", "GPSolution", "solve", "relative_l2"]


@dataclass
class SolverOptions:
    """Optimisation budget and loss weights.

    ``init``: ``"zeros"`` starts ``U`` at zero as in the paper; ``"collocation"`` starts it at
    the direct solution of the collocation equations for the initial kernel
    (:mod:`opflow.gp.collocation`), after which Adam refines ``U`` and the kernel together
    (``iterations`` may then be 0). ``lr_values``: Adam's rate for ``U``; by default ``1e-4``
    after a collocation start (a larger one shakes it loose) and ``lr`` from zero.
    The paper's protocol is ``init="zeros"`` with tens of thousands of iterations.
    ``recollocate_every``: with ``init: collocation``, solve the collocation equations again
    for the kernel learned so far every that many iterations and after the last one (0: only
    at the start; ignored from zero). The learned kernel is what makes the collocation
    solution accurate.
    ``lr_final``: if set, the learning rate decays exponentially from ``lr`` to ``lr_final``
    over the run (damps the late loss spikes of a constant-rate Adam); ``log_every``: how
    often the loss and the test error are recorded.
    """

    iterations: int = 1000
    init: Literal["zeros", "collocation"] = "collocation"
    lr: float = 1e-2
    lr_values: float | None = None
    recollocate_every: int = 100
    lr_final: float | None = None
    boundary_weight: float = 200.0
    jitter: float = 1e-6
    seed: int = 0
    log_every: int = 100

    def validate(self) -> None:
        if self.iterations < 0 or self.lr <= 0 or self.log_every < 1:
            raise ConfigError(
                f"iterations={self.iterations}, lr={self.lr}, log_every={self.log_every}",
                "iterations ≥ 0, positive lr and log_every",
                "fix the solver section",
            )


def _boundary_mask(shape: tuple[int, ...]) -> torch.Tensor:
    """True on every face of the grid."""
    mask = torch.zeros(shape, dtype=torch.bool)
    for axis in range(len(shape)):
        index = [slice(None)] * len(shape)
        for end in (0, -1):
            index[axis] = end
            mask[tuple(index)] = True
    return mask


def relative_l2(prediction: torch.Tensor, truth: torch.Tensor) -> float:
    """``‖prediction − truth‖₂ / ‖truth‖₂`` over all points."""
    return float(relative_lp_per_sample(prediction.reshape(1, -1), truth.reshape(1, -1)))


def _mesh(axis_points: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    return torch.meshgrid(*axis_points, indexing="ij")


def test_axes(problem: PDEProblem, n: int) -> list[torch.Tensor]:
    """``n`` equispaced test points per axis, ends included (300 in the paper)."""
    return [torch.linspace(lo, hi, n, dtype=torch.float64) for lo, hi in problem.domain]


@dataclass
class GPSolution:
    """A solved problem: the trained GP and its optimisation history.

    ``history`` has one entry per logged iteration: ``iteration``, ``loss``,
    ``offgrid_residual``, ``seconds`` and, when the exact solution is known, ``rel_l2`` on the
    test grid. ``selected_iteration``: the re-solve whose state this is (``None``: the final
    iterate).
    """

    problem: PDEProblem
    model: GridGP
    history: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    selected_iteration: int | None = None

    def __post_init__(self):
        with torch.no_grad():
            self._weights = self.model.weights()

    def predict(self, points: torch.Tensor | np.ndarray) -> torch.Tensor:
        """``u`` at scattered points ``(M, D)`` (or ``(M,)`` in 1-D) anywhere in the domain."""
        points = torch.as_tensor(points, dtype=torch.float64)
        if points.ndim == 1 and self.problem.ndim == 1:
            points = points[:, None]
        if points.ndim != 2 or points.shape[1] != self.problem.ndim:
            raise ShapeError(
                f"points of shape {tuple(points.shape)}",
                f"(M, {self.problem.ndim}) coordinates",
                "stack the coordinates as columns",
            )
        with torch.no_grad():
            return self.model.predict(points, self._weights)

    def predict_grid(self, axis_points: list[torch.Tensor]) -> torch.Tensor:
        """``u`` on the tensor grid of the given per-axis coordinates."""
        with torch.no_grad():
            return self.model.predict_grid(
                [torch.as_tensor(p, dtype=torch.float64) for p in axis_points], self._weights
            )

    def to_xarray(self, test_points: int = 300) -> xr.Dataset:
        """The solution on a ``test_points``-per-axis grid; with the exact solution and error
        (and ``rel_l2`` in the attributes) when it is known."""
        axes = test_axes(self.problem, test_points)
        names = VARIABLES[: self.problem.ndim]
        u = self.predict_grid(axes)
        data = {"u": (names, u.numpy())}
        attrs = {
            "problem": self.problem.name,
            "collocation": list(self.model.shape),
            "iterations": self.history[-1]["iteration"] if self.history else 0,
            "seconds": self.seconds,
        }
        if self.selected_iteration is not None:
            attrs["selected_iteration"] = self.selected_iteration
        if self.problem.solution is not None:
            exact = self.problem.solution(*_mesh(axes))
            data["u_exact"] = (names, exact.numpy())
            data["error"] = (names, (u - exact).numpy())
            attrs["rel_l2"] = relative_l2(u, exact)
        coords = {n: p.numpy() for n, p in zip(names, axes)}
        return xr.Dataset(data, coords=coords, attrs=attrs)


def solve(
    problem: PDEProblem,
    collocation: list[int],
    kernel: KernelConfig | None = None,
    options: SolverOptions | None = None,
    test_points: int = 300,
    progress: bool | None = None,
    callback: Callable[[dict], None] | None = None,
) -> GPSolution:
    """Solve ``problem`` by GP-HM on a uniform grid of ``collocation`` points per axis.

    Every logged entry records the loss, the PDE residual *between* the collocation points
    (``offgrid_residual``, relative to ``‖f‖``: needs no exact solution) and, when the exact
    solution is known, the test error ``rel_l2``. With ``recollocate_every`` the state after
    the re-solve with the smallest off-grid residual is returned (``selected_iteration``);
    otherwise the final iterate. The test error never picks the answer. ``callback`` receives
    every history entry as it is logged.
    """
    kernel = kernel or KernelConfig()
    options = options or SolverOptions()
    options.validate()
    torch.manual_seed(options.seed)
    model = build_gp(problem, collocation, kernel, options.jitter)
    grid = _mesh([a.points for a in model.axes])
    source = problem.source(*grid)
    boundary = _boundary_mask(model.shape)
    boundary_values = problem.boundary(*(g[boundary] for g in grid))
    midpoints = [0.5 * (a.points[1:] + a.points[:-1]) for a in model.axes]
    midpoint_source = problem.source(*_mesh(midpoints))
    test = test_axes(problem, test_points)
    exact = problem.solution(*_mesh(test)) if problem.solution is not None else None

    def recollocate() -> bool:
        values, _ = collocation_solve(problem, model, source, boundary, boundary_values)
        limit = 1e6 * max(1.0, float(boundary_values.abs().max()))
        if not (torch.isfinite(values).all() and values.abs().max() < limit):
            return False  # a near-singular operator (e.g. advection): keep the current U
        with torch.no_grad():
            model.values.copy_(values)
        return True

    def offgrid_residual() -> float:
        with torch.no_grad():
            weights = model.weights()
            derivs = {a: model.predict_grid(midpoints, weights, a) for a in problem.derivatives}
            residual = apply_terms(problem.terms, derivs) - midpoint_source
            scale = midpoint_source.norm()  # a homogeneous equation (f = 0) reports the RMS
            return float(residual.norm() / (scale if scale > 0 else residual.numel() ** 0.5))

    collocating = options.init == "collocation"
    if collocating and not recollocate():
        warnings.warn(
            f"{problem.name}: the collocation equations are near-singular for this kernel; "
            "starting from U = 0 (solver.init: zeros) instead",
            stacklevel=2,
        )
        collocating = False
    others = [p for n, p in model.named_parameters() if p.requires_grad and n != "values"]
    values_lr = options.lr_values or (1e-4 if collocating else options.lr)
    optimizer = torch.optim.Adam(
        [{"params": others}, {"params": [model.values], "lr": values_lr}], lr=options.lr
    )
    base_rates = [g["lr"] for g in optimizer.param_groups]
    decay = 0.0 if options.lr_final is None else math.log(options.lr_final / options.lr)
    every = options.recollocate_every if collocating else 0
    best = (math.inf, 0, None)  # (off-grid residual, iteration, state) over the re-solves
    history: list[dict] = []
    start = time.perf_counter()
    last = options.iterations
    bar = tqdm(
        range(last + 1), desc=problem.name, disable=None if progress is None else not progress
    )
    for iteration in bar:
        resolved = every and iteration and (iteration % every == 0 or iteration == last)
        if resolved:
            recollocate()
        loss = _loss(model, problem, source, boundary, boundary_values, options.boundary_weight)
        if not torch.isfinite(loss):
            if best[2] is None:
                raise ConfigError(
                    f"the GP loss became {loss.item()} at iteration {iteration}",
                    "a finite loss",
                    "lower solver.lr or set solver.lr_final",
                )
            warnings.warn(
                f"{problem.name}: the GP loss became {loss.item()} at iteration {iteration}; "
                f"returning the state of iteration {best[1]}",
                stacklevel=2,
            )
            break
        logging = iteration % options.log_every == 0 or iteration == last
        residual = offgrid_residual() if logging or resolved or iteration == 0 else None
        if every and (resolved or iteration == 0) and residual < best[0]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = (residual, iteration, state)
        if logging:
            entry = {
                "iteration": iteration,
                "loss": loss.item(),
                "offgrid_residual": residual,
                "seconds": time.perf_counter() - start,
            }
            if exact is not None:
                with torch.no_grad():
                    entry["rel_l2"] = relative_l2(model.predict_grid(test), exact)
                bar.set_postfix(loss=f"{entry['loss']:.3e}", rel_l2=f"{entry['rel_l2']:.2e}")
            history.append(entry)
            if callback is not None:
                callback(entry)
        if iteration == last:
            break
        if decay:
            for group, rate in zip(optimizer.param_groups, base_rates):
                group["lr"] = rate * math.exp(decay * iteration / last)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    bar.close()
    seconds = time.perf_counter() - start
    selected = None
    if every:
        _, selected, state = best
        model.load_state_dict(state)
    return GPSolution(problem, model, history, seconds, selected)


def _loss(model: GridGP, problem, source, boundary, boundary_values, boundary_weight):
    """The negative log joint of the module docstring, for the current state."""
    gram = model.factorize()
    derivatives = {a: model.derivative(gram, a) for a in problem.derivatives}
    residual = apply_terms(problem.terms, derivatives) - source
    log_tau, log_v = model.log_boundary_precision, model.log_residual_precision
    prior = 0.5 * gram.logdet() + 0.5 * gram.quadratic(model.values)
    misfit = ((model.values[boundary] - boundary_values) ** 2).sum()
    boundary_fit = 0.5 * log_tau.exp() * misfit - 0.5 * boundary_values.numel() * log_tau
    residual_fit = 0.5 * log_v.exp() * (residual**2).sum() - 0.5 * residual.numel() * log_v
    return prior + boundary_weight * boundary_fit + residual_fit
