"""A small PDE specification: ``Σ_i c_i (∂^{α_i} u)^{p_i} = f`` in the box, ``u = g`` on its faces.

One :class:`Term` per summand, with the derivative order along each axis. The named equations
of the GP-HM paper are built by :func:`make_problem`:

=============  ==============================================  =========
``poisson``    ``Σ_d ∂²u/∂x_d² = f``                          1-D, 2-D
``allen_cahn`` ``Σ_d ∂²u/∂x_d² + u (u² − 1) = f``              1-D, 2-D
``advection``  ``β ∂u/∂x + ∂u/∂y = f`` (``y`` plays time)      2-D
=============  ==============================================  =========

With a manufactured ``solution`` the source ``f`` is the operator applied to it (autograd) and
the boundary data ``g`` its trace; otherwise both are given as expressions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from opflow.errors import ConfigError
from opflow.gp.expression import compile_expression

__all__ = ["Term", "PDEProblem", "EQUATIONS", "make_problem", "apply_terms", "derivative"]

VARIABLES = ("x", "y")
EQUATIONS = ("poisson", "allen_cahn", "advection")


@dataclass(frozen=True)
class Term:
    """``coefficient · (∂^derivative u)^power``; ``derivative`` holds one order per axis."""

    coefficient: float
    derivative: tuple[int, ...]
    power: int = 1


@dataclass
class PDEProblem:
    """An equation on a box with Dirichlet data on every face.

    Attributes:
        terms: the left-hand side.
        domain: ``((low, high), …)`` per axis.
        source: ``f(x[, y])`` on tensors of coordinates.
        boundary: ``g(x[, y])``.
        solution: the exact solution if known (for errors), else ``None``.
    """

    name: str
    terms: tuple[Term, ...]
    domain: tuple[tuple[float, float], ...]
    source: Callable[..., torch.Tensor]
    boundary: Callable[..., torch.Tensor]
    solution: Callable[..., torch.Tensor] | None = None

    @property
    def ndim(self) -> int:
        return len(self.domain)

    @property
    def derivatives(self) -> set[tuple[int, ...]]:
        """Every derivative multi-index the terms use."""
        return {t.derivative for t in self.terms}


def apply_terms(terms: tuple[Term, ...], derivatives: dict[tuple[int, ...], torch.Tensor]):
    """``Σ c (∂^α u)^p`` given each needed ``∂^α u`` (all the same shape)."""
    total = 0.0
    for term in terms:
        value = derivatives[term.derivative]
        total = total + term.coefficient * (value if term.power == 1 else value**term.power)
    return total


def derivative(
    values: torch.Tensor, coordinates: tuple[torch.Tensor, ...], orders: tuple[int, ...]
) -> torch.Tensor:
    """``∂^orders`` of pointwise ``values`` w.r.t. ``coordinates`` (which require grad)."""
    out = values
    for axis, order in enumerate(orders):
        for _ in range(order):
            (out,) = torch.autograd.grad(out.sum(), coordinates[axis], create_graph=True)
    return out


def _named_terms(equation: str, ndim: int, beta: float) -> tuple[Term, ...]:
    def axis_order(axis: int, order: int) -> tuple[int, ...]:
        return tuple(order if d == axis else 0 for d in range(ndim))

    laplacian = tuple(Term(1.0, axis_order(d, 2)) for d in range(ndim))
    if equation == "poisson":
        return laplacian
    if equation == "allen_cahn":
        zero = (0,) * ndim
        return laplacian + (Term(1.0, zero, 3), Term(-1.0, zero))
    if equation == "advection":
        if ndim != 2:
            raise ConfigError(
                f"advection on a {ndim}-D domain",
                "a 2-D domain (x, y) with y as time",
                "give problem.domain two intervals",
            )
        return (Term(float(beta), (1, 0)), Term(1.0, (0, 1)))
    raise ConfigError(
        f"unknown equation {equation!r}", f"one of {EQUATIONS}", "fix problem.equation"
    )


def make_problem(
    equation: str,
    domain: list[tuple[float, float]],
    solution: str | None = None,
    source: str | None = None,
    boundary: str | None = None,
    beta: float = 1.0,
    name: str | None = None,
) -> PDEProblem:
    """Build a named equation with a manufactured ``solution`` or explicit ``source``/``boundary``.

    Expressions are strings in ``x`` (and ``y`` in 2-D), e.g. ``"sin(100*x)*sin(100*y)"``.
    """
    ndim = len(domain)
    if ndim not in (1, 2):
        raise ConfigError(
            f"a {ndim}-D domain", "1 or 2 intervals [low, high]", "fix problem.domain"
        )
    variables = VARIABLES[:ndim]
    terms = _named_terms(equation, ndim, beta)
    exact = compile_expression(solution, variables) if solution is not None else None
    if exact is None and (source is None or boundary is None):
        raise ConfigError(
            "the problem has neither a solution nor both source and boundary",
            "problem.solution, or problem.source and problem.boundary",
            "add the manufactured solution or the data",
        )
    if source is not None:
        source_fn = compile_expression(source, variables)
    else:

        def source_fn(*coordinates: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                leaves = tuple(c.detach().requires_grad_(True) for c in coordinates)
                values = exact(*leaves)
                derivs = {a: derivative(values, leaves, a) for a in {t.derivative for t in terms}}
                return apply_terms(terms, derivs).detach()

    boundary_fn = compile_expression(boundary, variables) if boundary is not None else exact
    return PDEProblem(
        name=name or equation,
        terms=terms,
        domain=tuple((float(lo), float(hi)) for lo, hi in domain),
        source=source_fn,
        boundary=boundary_fn,
        solution=exact,
    )
