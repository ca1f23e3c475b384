"""Spectral mixture kernels on one axis, with their exact derivatives.

A stationary kernel is the inverse Fourier transform of its power spectrum (Wiener–Khinchin).
Modelling the spectrum of the solution as a mixture of ``Q`` bumps centred at frequencies
``±μ_q`` gives, for the lag ``d = x − x'`` (same units as ``x``)::

    k(d) = Σ_q w_q · g_q(d) · cos(2π μ_q d)

with ``g_q`` the transform of one bump:

* ``"gaussian"`` (Gaussian bump, the spectral mixture kernel): ``g(d) = exp(−a d²)``,
  ``a = exp(log_lengthscale)`` (an inverse squared length);
* ``"matern52"`` (Student-t bump): ``g(d) = (1 + √5 λ|d| + 5/3 λ² d²) exp(−√5 λ|d|)``,
  ``λ = exp(log_lengthscale)`` (an inverse length).

Weights and length-scales are learned in the log domain; optimising ``log w`` rather than ``w``
is the Jeffreys prior of Fang et al. (ICLR 2024) that prunes superfluous frequencies.

Derivatives are closed form. With ``b = 2π μ``, ``c = cos(b d)``, ``s = sin(b d)``::

    k'  = w (g' c − g b s)
    k'' = w (g'' c − 2 g' b s − g b² c)

where for the Gaussian ``g' = −2 a d g``, ``g'' = (4a²d² − 2a) g`` and for the Matérn-5/2
``g' = −5/3 λ² d (1 + √5 λ|d|) e``, ``g'' = −5/3 λ² (1 + √5 λ|d| − 5 λ² d²) e`` with
``e = exp(−√5 λ|d|)``. Derivatives are with respect to the first argument, so
``∂ᵐ/∂xᵐ k(x − x') = k⁽ᵐ⁾(d)``; a GP's mean derivative is ``u⁽ᵐ⁾(x) = k⁽ᵐ⁾(x − X) K⁻¹ U``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from opflow.errors import ConfigError

__all__ = ["SpectralMixtureKernel", "BASES"]

BASES = ("gaussian", "matern52")
_SQRT5 = math.sqrt(5.0)


class SpectralMixtureKernel(nn.Module):
    """``k(d) = Σ_q w_q g_q(d) cos(2π μ_q d)`` on one axis.

    Args:
        n_components: ``Q``, the number of spectral bumps.
        max_frequency: initial frequencies ``μ_q`` are spread on ``[0, max_frequency]``
            (cycles per unit of ``x``); set it above the highest frequency expected.
        base: ``"matern52"`` (Student-t mixture, GP-HM-StM) or ``"gaussian"`` (GP-HM-GM).
        learn_frequency: whether ``μ_q`` are trained; a plain SE kernel is
            ``n_components=1, max_frequency=0, learn_frequency=False, base="gaussian"``.
        log_lengthscale: initial ``log a`` / ``log λ`` (0 in the paper).
    """

    def __init__(
        self,
        n_components: int = 30,
        max_frequency: float = 20.0,
        base: str = "matern52",
        learn_frequency: bool = True,
        log_lengthscale: float = 0.0,
        dtype: torch.dtype = torch.float64,
    ):
        super().__init__()
        if base not in BASES:
            raise ConfigError(f"unknown kernel base {base!r}", f"one of {BASES}", "fix kernel.base")
        if n_components < 1:
            raise ConfigError(
                f"n_components={n_components}", "at least 1", "fix kernel.n_components"
            )
        self.base = base
        q = n_components
        self.log_weight = nn.Parameter(torch.full((q,), -math.log(q), dtype=dtype))
        self.log_lengthscale = nn.Parameter(torch.full((q,), float(log_lengthscale), dtype=dtype))
        frequency = torch.linspace(0.0, 1.0, q, dtype=dtype) * max_frequency
        if q == 1:
            frequency = torch.full((1,), float(max_frequency), dtype=dtype)
        self.frequency = nn.Parameter(frequency, requires_grad=learn_frequency)

    def _envelope(self, d: torch.Tensor, order: int) -> tuple[torch.Tensor, ...]:
        """``g, g', g''`` (up to ``order``) at lags ``d[..., None]`` for each component."""
        scale = self.log_lengthscale.exp()
        if self.base == "gaussian":
            g = torch.exp(-scale * d * d)
            if order == 0:
                return (g,)
            g1 = -2.0 * scale * d * g
            return (g, g1, (4.0 * scale * scale * d * d - 2.0 * scale) * g)
        r = _SQRT5 * scale * d.abs()
        e = torch.exp(-r)
        g = (1.0 + r + r * r / 3.0) * e
        if order == 0:
            return (g,)
        s2 = 5.0 / 3.0 * scale * scale
        g1 = -s2 * d * (1.0 + r) * e
        return (g, g1, -s2 * (1.0 + r - r * r) * e)

    def forward(self, lag: torch.Tensor, order: int = 0) -> torch.Tensor:
        """``k⁽ᵒʳᵈᵉʳ⁾(lag)``, same shape as ``lag``; ``order`` ∈ {0, 1, 2}."""
        if order not in (0, 1, 2):
            raise ConfigError(
                f"kernel derivative of order {order}", "order 0, 1 or 2", "use at most u_xx"
            )
        d = lag[..., None]
        b = 2.0 * math.pi * self.frequency
        c = torch.cos(b * d)
        g = self._envelope(d, order)
        if order == 0:
            value = g[0] * c
        else:
            s = torch.sin(b * d)
            if order == 1:
                value = g[1] * c - g[0] * b * s
            else:
                value = g[2] * c - 2.0 * g[1] * b * s - g[0] * b * b * c
        return value @ self.log_weight.exp()

    def matrix(self, x1: torch.Tensor, x2: torch.Tensor, order: int = 0) -> torch.Tensor:
        """``[k⁽ᵒʳᵈᵉʳ⁾(x1_i − x2_j)]``, shape ``(len(x1), len(x2))``."""
        return self(x1[:, None] - x2[None, :], order)
