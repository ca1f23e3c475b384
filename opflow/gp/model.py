"""The GP-HM state on a collocation grid: values ``U``, one spectral mixture kernel per axis, and
the learned precisions of boundary and residual fits (see :mod:`opflow.gp.solver` for the loss).

The GP mean gives ``U``'s derivatives on the grid and the solution anywhere, one axis at a time:
``∂^α U = U ×_1 (K_1^{(α_1)} K_1^{-1}) ⋯ ×_D (K_D^{(α_D)} K_D^{-1})`` and
``u(x) = Π_d k_d(x_d − X_d) ⋅ K⁻¹ U``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from opflow.errors import ConfigError
from opflow.gp.kernels import SpectralMixtureKernel
from opflow.gp.kronecker import AxisFactor, KroneckerGram, UniformAxis
from opflow.gp.pde import PDEProblem
from opflow.spectral.axis import apply_along

__all__ = ["KernelConfig", "GridGP", "build_gp"]


@dataclass
class KernelConfig:
    """One spectral mixture kernel per axis (same settings on every axis).

    ``log_lengthscale``: the initial ``log λ`` (Matérn) or ``log a`` (Gaussian); by default
    the envelope is scaled to the axis, ``λ = 2π / L`` and ``a = (2π / L)²`` for an axis of
    length ``L`` — the paper's 0 on its ``[0, 2π]`` domains, and the same solver after a
    change of units on any other.
    The plain SE-kernel GP baseline is ``base="gaussian", n_components=1,
    max_frequency=0, learn_frequency=False``.
    """

    base: Literal["matern52", "gaussian"] = "matern52"
    n_components: int = 30
    max_frequency: float = 20.0
    learn_frequency: bool = True
    log_lengthscale: float | None = None


class GridGP(nn.Module):
    """The GP state on a collocation grid: values ``U``, one kernel per axis, ``log τ``, ``log v``.

    Args:
        axes: one :class:`UniformAxis` per dimension (grid shape ``(n_1, …, n_D)``).
        kernels: one :class:`SpectralMixtureKernel` per dimension.
        jitter: diagonal added to every ``K_d``.
    """

    def __init__(self, axes: list[UniformAxis], kernels: list[SpectralMixtureKernel], jitter):
        super().__init__()
        self.axes = axes
        self.kernels = nn.ModuleList(kernels)
        self.jitter = jitter
        shape = tuple(a.n for a in axes)
        self.values = nn.Parameter(torch.zeros(shape, dtype=torch.float64))
        self.log_boundary_precision = nn.Parameter(torch.zeros((), dtype=torch.float64))
        self.log_residual_precision = nn.Parameter(torch.zeros((), dtype=torch.float64))

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)

    def factorize(self) -> KroneckerGram:
        """Factor every ``K_d`` for the current kernel parameters."""
        return KroneckerGram(
            [AxisFactor(a.gram(k), self.jitter) for a, k in zip(self.axes, self.kernels)]
        )

    def derivative(
        self, gram: KroneckerGram, orders: tuple[int, ...], values: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``∂^orders U`` on the grid from the GP mean, one axis at a time (``U`` defaults to
        the current ``values``)."""
        out = self.values if values is None else values
        for axis, order in enumerate(orders):
            if order:
                weights = gram.solve_along(out, axis)
                out = apply_along(self.axes[axis].gram(self.kernels[axis], order), weights, axis)
        return out

    def weights(self, gram: KroneckerGram | None = None) -> torch.Tensor:
        """``K⁻¹ U`` on the grid (the GP mean is ``k(x, X) · K⁻¹ U``)."""
        return (gram or self.factorize()).solve(self.values)

    def predict_grid(
        self, axis_points: list[torch.Tensor], weights=None, orders: tuple[int, ...] | None = None
    ) -> torch.Tensor:
        """The GP mean (or its derivative ``∂^orders``) on the tensor grid ``axis_points[0] × …``,
        shape ``(m_1, …, m_D)``."""
        out = self.weights() if weights is None else weights
        orders = orders or (0,) * len(axis_points)
        for axis, (points, order) in enumerate(zip(axis_points, orders)):
            cross = self.kernels[axis].matrix(points, self.axes[axis].points, order)
            out = apply_along(cross, out, axis)
        return out

    def predict(self, points: torch.Tensor, weights=None, chunk: int = 4096) -> torch.Tensor:
        """The GP mean at scattered ``points`` of shape ``(M, D)``; returns ``(M,)``."""
        weights = self.weights() if weights is None else weights
        pieces = []
        for start in range(0, points.shape[0], chunk):
            block = points[start : start + chunk]
            crosses = [
                k.matrix(block[:, d], a.points)
                for d, (a, k) in enumerate(zip(self.axes, self.kernels))
            ]
            if len(crosses) == 1:
                pieces.append(crosses[0] @ weights)
            else:
                pieces.append(((crosses[0] @ weights) * crosses[1]).sum(-1))
        return torch.cat(pieces)


def build_gp(
    problem: PDEProblem, collocation: list[int], kernel: KernelConfig, jitter: float
) -> GridGP:
    """The initial GP state for ``problem`` on a uniform grid of ``collocation`` points."""
    if len(collocation) != problem.ndim:
        raise ConfigError(
            f"collocation {list(collocation)} for a {problem.ndim}-D problem",
            f"{problem.ndim} grid sizes",
            "give one size per axis",
        )
    axes = [UniformAxis(lo, hi, n) for (lo, hi), n in zip(problem.domain, collocation)]
    kernels = []
    for axis in axes:
        log_lengthscale = kernel.log_lengthscale
        if log_lengthscale is None:
            inverse_length = 2 * math.pi / (axis.high - axis.low)
            power = 2 if kernel.base == "gaussian" else 1
            log_lengthscale = power * math.log(inverse_length)
        kernels.append(
            SpectralMixtureKernel(
                kernel.n_components,
                kernel.max_frequency,
                kernel.base,
                kernel.learn_frequency,
                log_lengthscale,
            )
        )
    return GridGP(axes, kernels, jitter)
