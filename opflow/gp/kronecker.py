r"""Per-axis factorizations of a product kernel on a tensor grid (Kronecker algebra).

On a grid ``X = X_1 × … × X_D`` (``n_d`` points on axis ``d``, ``N = Π n_d``) a product kernel
``k(x, x') = Π_d k_d(x_d, x'_d)`` has the Gram matrix ``K = K_1 ⊗ … ⊗ K_D`` (row-major
flattening of the grid). Nothing here ever forms ``K``:

.. math::

    \log\det K = \sum_d \frac{N}{n_d} \log\det K_d, \qquad
    K^{-1}\,\mathrm{vec}(U)
      = \mathrm{vec}\big(U \times_1 K_1^{-1} \times_2 \cdots \times_D K_D^{-1}\big)

where ``×_d`` multiplies along axis ``d``. The cost is ``Σ_d n_d³`` for the factorizations
plus ``N Σ_d n_d`` for a solve, instead of ``N³``.

A uniform axis makes each stationary ``K_d`` Toeplitz: its entries depend only on the lag
``i − j``, so the kernel is evaluated on the ``2 n_d − 1`` distinct lags and gathered, not on
all ``n_d²`` pairs (the transcendental functions are the dominant cost otherwise).
"""

from __future__ import annotations

import torch

from opflow.errors import ConfigError

__all__ = ["UniformAxis", "AxisFactor", "KroneckerGram"]


class UniformAxis:
    """``n`` equispaced collocation points on ``[low, high]`` (both ends included).

    Attributes:
        points: ``(n,)`` coordinates.
        lags: ``(2n − 1,)`` distinct differences ``x_i − x_j``, from ``−(high − low)`` up.
        lag_index: ``(n, n)`` integer index with ``lags[lag_index[i, j]] = x_i − x_j``.
    """

    def __init__(self, low: float, high: float, n: int, dtype: torch.dtype = torch.float64):
        if n < 2 or not high > low:
            raise ConfigError(
                f"collocation axis [{low}, {high}] with {n} points",
                "high > low and at least 2 points",
                "fix problem.domain / collocation",
            )
        self.low, self.high, self.n = float(low), float(high), int(n)
        self.points = torch.linspace(low, high, n, dtype=dtype)
        spacing = (high - low) / (n - 1)
        self.lags = torch.arange(-(n - 1), n, dtype=dtype) * spacing
        i = torch.arange(n)
        self.lag_index = i[:, None] - i[None, :] + (n - 1)

    def gram(self, kernel, order: int = 0) -> torch.Tensor:
        """``[k⁽ᵒʳᵈᵉʳ⁾(x_i − x_j)]``, ``(n, n)``, from the kernel on the distinct lags only."""
        return kernel(self.lags, order)[self.lag_index]


class AxisFactor:
    """Cholesky factorization of one axis' Gram matrix ``K_d + jitter·I``.

    Args:
        gram: ``(n, n)`` symmetric positive-(semi)definite matrix.
        jitter: added to the diagonal before factorizing (``1e-6`` in the paper).
    """

    def __init__(self, gram: torch.Tensor, jitter: float = 1e-6):
        n = gram.shape[-1]
        self.matrix = gram + jitter * torch.eye(n, dtype=gram.dtype, device=gram.device)
        self.cholesky, info = torch.linalg.cholesky_ex(self.matrix)
        if int(info) != 0:
            raise ConfigError(
                "a kernel Gram matrix is not positive definite",
                "a positive-definite covariance on the collocation grid",
                "raise optim.jitter or lower the learning rate",
            )
        self.n = n

    def logdet(self) -> torch.Tensor:
        return 2.0 * self.cholesky.diagonal().log().sum()

    def solve(self, rhs: torch.Tensor) -> torch.Tensor:
        """``K_d⁻¹ rhs`` for ``rhs`` of shape ``(n, m)``."""
        return torch.cholesky_solve(rhs, self.cholesky)


class KroneckerGram:
    """``K = K_1 ⊗ … ⊗ K_D`` held as one :class:`AxisFactor` per axis."""

    def __init__(self, factors: list[AxisFactor]):
        self.factors = factors
        self.shape = tuple(f.n for f in factors)

    @property
    def size(self) -> int:
        return int(torch.tensor(self.shape).prod())

    def logdet(self) -> torch.Tensor:
        """``log det K = Σ_d (N / n_d) log det K_d``."""
        n_total = self.size
        return sum((n_total // f.n) * f.logdet() for f in self.factors)

    def solve_along(self, values: torch.Tensor, axis: int) -> torch.Tensor:
        """``values ×_axis K_axis⁻¹``: solve with one axis' factor only."""
        moved = values.movedim(axis, 0)
        solved = self.factors[axis].solve(moved.reshape(moved.shape[0], -1))
        return solved.reshape(moved.shape).movedim(0, axis)

    def solve(self, values: torch.Tensor) -> torch.Tensor:
        """``K⁻¹ vec(values)`` reshaped to the grid; ``values`` has shape ``self.shape``."""
        out = values
        for axis in range(len(self.factors)):
            out = self.solve_along(out, axis)
        return out

    def quadratic(self, values: torch.Tensor) -> torch.Tensor:
        """``vec(values)ᵀ K⁻¹ vec(values)``."""
        return (values * self.solve(values)).sum()

    def dense(self) -> torch.Tensor:
        """The full ``(N, N)`` matrix, for tests and small-grid comparisons only."""
        out = self.factors[0].matrix
        for factor in self.factors[1:]:
            out = torch.kron(out, factor.matrix)
        return out
