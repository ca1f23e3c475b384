r"""Direct solve of the collocation equations for the grid values ``U`` at a fixed kernel.

For fixed kernel parameters the GP mean turns each derivative into a per-axis matrix,
``∂^α U = U ×_1 A_1^{(α_1)} ⋯ ×_D A_D^{(α_D)}`` with ``A_d^{(o)} = K_d^{(o)} K_d^{-1}``. For
equations whose linear terms each differentiate along one axis (Poisson, Allen–Cahn,
advection) the linear part is a Kronecker sum::

    L U = U ×_1 M_1 + … + U ×_D M_D,     M_d = Σ_{terms along d} c A_d^{(o)}

(zero-order terms ``c·u`` are folded into ``M_1``). Imposing ``U = g`` on the faces and
``L U = f`` at the interior points is, in 1-D, one ``(n−2)²`` linear solve and, in 2-D, the
Sylvester equation ``M_1 X + X M_2ᵀ = R`` (Bartels–Stewart: ``O(n_1³ + n_2³)``, never the
``N × N`` system). Terms with a power above one (``u³`` in Allen–Cahn) are moved to the right
and iterated (Picard), which converges when the linear part dominates, as it does for the
high-frequency problems this solver is for; the mean slope of those terms is added to the
linear operator (a shifted Picard iteration), and the iterate with the smallest residual of
the full equations is returned should the iteration stall or diverge.

Used by :func:`opflow.gp.solver.solve` to initialise ``U`` (``solver.init: collocation``):
the Adam optimisation of the paper then starts next to the answer instead of at zero.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch

from opflow.errors import ConfigError
from opflow.gp.kronecker import KroneckerGram
from opflow.gp.pde import PDEProblem, apply_terms
from opflow.spectral.axis import apply_along

__all__ = ["differentiation_matrix", "collocation_solve"]


def differentiation_matrix(model, gram: KroneckerGram, axis: int, order: int) -> torch.Tensor:
    """``A^{(order)} = K^{(order)} K⁻¹`` on one axis: values on the grid → derivative values."""
    derivative_gram = model.axes[axis].gram(model.kernels[axis], order)
    return gram.factors[axis].solve(derivative_gram.transpose(0, 1)).transpose(0, 1)


def _axis_operators(problem: PDEProblem, model, gram: KroneckerGram) -> list[np.ndarray]:
    shape = model.shape
    operators = [np.zeros((n, n)) for n in shape]
    for term in problem.terms:
        if term.power != 1:
            continue
        axes = [d for d, o in enumerate(term.derivative) if o]
        if len(axes) > 1:
            raise ConfigError(
                f"a mixed-derivative term {term.derivative}",
                "linear terms that differentiate along one axis each",
                "use solver.init: zeros for this equation",
            )
        if not axes:
            operators[0] += term.coefficient * np.eye(shape[0])
            continue
        axis = axes[0]
        matrix = differentiation_matrix(model, gram, axis, term.derivative[axis])
        operators[axis] += term.coefficient * matrix.numpy()
    return operators


def collocation_solve(
    problem: PDEProblem,
    model,
    source: torch.Tensor,
    boundary: torch.Tensor,
    boundary_values: torch.Tensor,
    max_picard: int = 50,
    tolerance: float = 1e-12,
) -> tuple[torch.Tensor, int]:
    """Grid values solving the collocation equations; returns ``(U, picard_iterations)``.

    Args:
        source: ``f`` on the grid, shape ``model.shape``.
        boundary: boolean mask of the face points; ``boundary_values``: ``g`` there.
    """
    if problem.ndim > 2:
        raise ConfigError(
            f"collocation init on a {problem.ndim}-D grid", "1-D or 2-D", "use solver.init: zeros"
        )
    with torch.no_grad():
        gram = model.factorize()
        operators = [torch.from_numpy(m) for m in _axis_operators(problem, model, gram)]
        nonlinear = tuple(t for t in problem.terms if t.power != 1)
        interior = (slice(1, -1),) * problem.ndim
        values = torch.zeros(model.shape, dtype=torch.float64)
        values[boundary] = boundary_values

        def linear_part(grid_values: torch.Tensor) -> torch.Tensor:
            return sum(apply_along(m, grid_values, d) for d, m in enumerate(operators))

        def nonlinear_part(grid_values: torch.Tensor) -> torch.Tensor:
            derivs = {
                t.derivative: model.derivative(gram, t.derivative, grid_values) for t in nonlinear
            }
            return apply_terms(nonlinear, derivs)

        def residual_norm(grid_values: torch.Tensor) -> float:
            residual = linear_part(grid_values) + nonlinear_part(grid_values) - source
            return float(residual[interior].norm())

        known = linear_part(values)  # what the boundary data contribute (interior is zero)
        inner = [m[1:-1, 1:-1].numpy() for m in operators]
        eye = np.eye(inner[0].shape[0])
        best, best_norm, stalled = values.clone(), np.inf, 0
        for iteration in range(1, max_picard + 1):
            rhs = source - known
            shift = 0.0
            if nonlinear:
                # shifted Picard: the mean slope of the pointwise nonlinear terms joins the
                # linear operator, so only the deviation from it is lagged an iteration
                slope = sum(
                    t.coefficient * t.power * values[interior] ** (t.power - 1)
                    for t in nonlinear
                    if not any(t.derivative)
                )
                shift = float(slope.mean()) if torch.is_tensor(slope) else 0.0
                rhs = rhs - nonlinear_part(values) + shift * values
            rhs = rhs[interior].numpy()
            if problem.ndim == 1:
                solution = np.linalg.solve(inner[0] + shift * eye, rhs)
            else:
                solution = scipy.linalg.solve_sylvester(inner[0] + shift * eye, inner[1].T, rhs)
            if not np.all(np.isfinite(solution)):
                break
            change = np.linalg.norm(solution - values[interior].numpy())
            values[interior] = torch.from_numpy(solution)
            if not nonlinear:
                return values, iteration
            norm = residual_norm(values)
            if norm < best_norm:
                best, best_norm, stalled = values.clone(), norm, 0
            else:  # diverging or stuck: keep the best iterate seen
                stalled += 1
                if stalled >= 3:
                    break
            if change <= tolerance * max(np.linalg.norm(solution), 1.0):
                break
    return best, iteration
