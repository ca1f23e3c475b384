"""Steady Darcy flow on the unit square: ``-div(a grad u) = f``, ``u = 0`` on the boundary.

The standard FNO Darcy benchmark (Li et al. 2021): the coefficient ``a`` is piecewise constant,
``a_high`` where a Gaussian random field is >= 0 and ``a_low`` elsewhere; ``f = 1``.

Grid: vertex-centred, ``n`` points per axis *including* the boundary, ``x_i = i / (n - 1)``,
so the grid of ``n`` points is every ``k``-th point of the grid of ``k (n - 1) + 1`` points.
Arrays are indexed ``[..., y, x]``.

Discretisation: the 5-point finite-volume scheme

    (1/h²) Σ_faces a_face (u_P - u_neighbour) = f_P,

with ``a_face`` the harmonic mean of the two node values. The harmonic mean keeps the flux
continuous across a jump of ``a`` and is second-order accurate where ``a`` is smooth. The
sparse system (SPD, ``(n-2)²`` unknowns) is solved with SuperLU.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from opflow.errors import DataError

__all__ = ["SOLVER_VERSION", "assemble", "solve", "threshold_coefficient", "gaussian_random_field"]

SOLVER_VERSION = "opflow.solvers.darcy 1 (5-point finite volume, harmonic face means, SuperLU)"


def _face_means(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic means on the x-faces ``(n, n-1)`` and y-faces ``(n-1, n)`` of node values."""
    ax = 2 * a[:, 1:] * a[:, :-1] / (a[:, 1:] + a[:, :-1])
    ay = 2 * a[1:, :] * a[:-1, :] / (a[1:, :] + a[:-1, :])
    return ax, ay


def assemble(a: np.ndarray) -> scipy.sparse.csr_matrix:
    """The operator ``-div(a grad .)`` on the interior nodes, as an ``(m², m²)`` CSR matrix.

    ``a``: ``(n, n)`` positive node values, ``m = n - 2``. Unknowns are ordered row-major
    (``y`` slow, ``x`` fast); boundary values (zero) are eliminated.
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    if a.ndim != 2 or a.shape[1] != n or n < 3:
        raise DataError(
            f"Darcy coefficient of shape {a.shape}",
            "a square (n, n) array with n >= 3 (boundary points included)",
            "pass one 2-D coefficient field",
        )
    if not np.all(a > 0):
        raise DataError(
            f"Darcy coefficient has {int((a <= 0).sum())} non-positive values (min {a.min():.3g})",
            "a > 0 everywhere (the equation is elliptic only then)",
            "use positive a_low / a_high",
        )
    m, h2 = n - 2, 1.0 / (n - 1) ** 2
    ax, ay = _face_means(a)
    east, west = ax[1:-1, 1:], ax[1:-1, :-1]  # faces right/left of interior node (i, j)
    north, south = ay[1:, 1:-1], ay[:-1, 1:-1]
    index = np.arange(m * m).reshape(m, m)
    rows = [index.ravel()]
    cols = [index.ravel()]
    vals = [((east + west + north + south) / h2).ravel()]
    for coef, src, dst in (
        (east[:, :-1], index[:, :-1], index[:, 1:]),
        (west[:, 1:], index[:, 1:], index[:, :-1]),
        (north[:-1, :], index[:-1, :], index[1:, :]),
        (south[1:, :], index[1:, :], index[:-1, :]),
    ):
        rows.append(src.ravel())
        cols.append(dst.ravel())
        vals.append((-coef / h2).ravel())
    matrix = scipy.sparse.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(m * m, m * m)
    )
    return matrix.tocsr()


def solve(a: np.ndarray, f: np.ndarray | float = 1.0) -> np.ndarray:
    """Solve ``-div(a grad u) = f`` with ``u = 0`` on the boundary.

    ``a``: ``(n, n)`` node values; ``f``: a scalar or ``(n, n)`` node values (only the interior
    is used). Returns ``u``: ``(n, n)`` float64, zero on the boundary.
    """
    a = np.asarray(a, dtype=np.float64)
    n = a.shape[0]
    rhs = np.broadcast_to(np.asarray(f, dtype=np.float64), (n, n))[1:-1, 1:-1].ravel()
    u = np.zeros((n, n))
    u[1:-1, 1:-1] = scipy.sparse.linalg.splu(assemble(a).tocsc()).solve(rhs).reshape(n - 2, n - 2)
    return u


def gaussian_random_field(
    count: int, n: int, alpha: float, tau: float, rng: np.random.Generator
) -> np.ndarray:
    """Samples of ``N(0, (-Δ + τ²)^(-α))`` with Neumann boundaries, on the ``(n, n)`` node grid.

    Cosine series ``Σ_k ξ_k τ^(α-1) (π²|k|² + τ²)^(-α/2) cos(π k₁ y) cos(π k₂ x)`` over
    ``0 <= k₁, k₂ < n``, ``ξ_k ~ N(0, 1)``, with the mean mode ``k = 0`` left out (as in
    FNO's data). Returns ``(count, n, n)`` float64.
    """
    k = np.arange(n)
    nodes = np.arange(n) / (n - 1)
    basis = np.cos(np.pi * np.outer(nodes, k))  # (n points, n wavenumbers)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    scale = tau ** (alpha - 1) * (np.pi**2 * k2 + tau**2) ** (-alpha / 2)
    scale[0, 0] = 0.0
    xi = rng.standard_normal((count, n, n)) * scale
    return np.einsum("yk,bkl,xl->byx", basis, xi, basis, optimize=True)


def threshold_coefficient(field: np.ndarray, low: float, high: float) -> np.ndarray:
    """``high`` where ``field >= 0``, ``low`` elsewhere: FNO's piecewise-constant coefficient."""
    return np.where(field >= 0, high, low)
