"""A learned differential operator that stays valid as the grid is refined (Liu-Schiaffini et
al., ICML 2024).

:class:`DifferentialConv` — a learned ``k``-point stencil per axis whose weights sum to zero,
divided by the grid spacing ``h``:

.. math::

    (D x)_i = \\frac{1}{h} \\sum_j \\tilde w_j \\, x_{i + d_j},
    \\qquad \\tilde w_j = w_j - \\delta_{j, c} \\sum_l w_l,

with ``d_j`` the stencil offsets (in grid points) and ``c`` the centre. Because the weights sum
to zero, a Taylor expansion gives ``D x = Σ_j w̃_j (d_j · ∇x) + O(h)``: a directional
derivative, the same at every resolution, reached at first order in ``h`` (scaled by a fixed
physical length ``ℓ``, ``length_scale``, which sets its learning speed). ``h`` comes from
the input grid and the domain: ``L / n`` on a periodic axis, ``L / (n - 1)`` on a grid that
includes its boundary points (``zero`` or ``reflect`` boundaries); anisotropic grids use the
mean spacing.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.layers.padding import Boundary, check_boundary, grid_spacing, pad_boundary

__all__ = ["DifferentialConv", "CONV_BY_DIM"]

CONV_BY_DIM = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


class DifferentialConv(nn.Module):
    """Zero-sum learned stencil over ``h``: ``(B, in, *s) -> (B, out, *s)``.

    Parameters
    ----------
    in_channels, out_channels:
        Channel counts; one stencil per (out, in) pair.
    kernel_size:
        Odd stencil width per axis (3 in the paper).
    n_dim:
        Spatial dimensions (1, 2 or 3).
    boundary:
        ``periodic``, ``zero`` or ``reflect``: how the stencil sees past the edges.
    domain_length:
        Physical length of each axis (sets ``h`` together with the grid size).
    length_scale:
        ``ℓ`` in physical units: the layer computes ``ℓ D x``, a derivative times a fixed
        length, in the units of ``x``. It converges like ``D x`` and sets how fast the
        stencil learns: Adam moves every weight by about the learning rate per step, so the
        kernel ``ℓ w̃ / h`` moves by ``ℓ / h`` times that on a grid of spacing ``h``. With ``ℓ``
        of the order of the training grid's spacing the branch learns like an ordinary
        convolution (neuraloperator's kernel divides by ``h / h_train``: ``ℓ = h_train``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        n_dim: int = 2,
        boundary: Boundary = "periodic",
        domain_length: float | Sequence[float] = 1.0,
        length_scale: float = 1.0,
    ):
        super().__init__()
        check_boundary(boundary)
        if kernel_size < 3 or kernel_size % 2 == 0 or n_dim not in CONV_BY_DIM or length_scale <= 0:
            raise ConfigError(
                f"kernel_size={kernel_size}, n_dim={n_dim}, length_scale={length_scale}",
                "an odd kernel_size >= 3, n_dim in 1, 2, 3 and a length_scale > 0",
                "use kernel_size: 3 and a positive length_scale (physical units)",
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.n_dim = kernel_size, n_dim
        self.boundary, self.domain_length = boundary, domain_length
        self.length_scale = float(length_scale)
        bound = (in_channels * kernel_size**n_dim) ** -0.5  # torch's default conv init
        self.weight = nn.Parameter(
            torch.empty(out_channels, in_channels, *([kernel_size] * n_dim)).uniform_(-bound, bound)
        )

    def stencil(self) -> torch.Tensor:
        """The zero-sum stencil ``w̃`` (``w`` with the sum taken off the centre)."""
        total = self.weight.sum(dim=tuple(range(2, 2 + self.n_dim)), keepdim=True)
        centre = torch.zeros_like(self.weight)
        centre[(..., *([self.kernel_size // 2] * self.n_dim))] = 1.0
        return self.weight - centre * total

    def forward(self, x: torch.Tensor, spacing: Sequence[float] | None = None) -> torch.Tensor:
        if x.ndim != self.n_dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"DifferentialConv input of shape {tuple(x.shape)}",
                f"(batch, {self.in_channels}, *spatial) with {self.n_dim} spatial dims",
                "check the channel count and the spatial dims",
            )
        kernel = self.kernel(x.shape[2:], spacing)
        padded = pad_boundary(x, self.kernel_size // 2, self.boundary)
        return CONV_BY_DIM[self.n_dim](padded, kernel)

    def kernel(
        self,
        grid_shape: Sequence[int],
        spacing: Sequence[float] | None = None,
        like: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The convolution kernel on this grid, ``w̃ / h``: ``(out, in, k, ..., k)``
        (``like`` is accepted for a common signature with :class:`LocalIntegralConv`)."""
        if spacing is None:
            spacing = grid_spacing(grid_shape, self.boundary, self.domain_length)
        return self.stencil() * (self.length_scale / (sum(spacing) / len(spacing)))

    def coefficients(self) -> torch.Tensor:
        """The learned weights as coefficients of :meth:`basis`: ``(out, in, k**n_dim)``."""
        return self.weight.flatten(2)

    def basis(
        self, grid_shape: Sequence[int], spacing: Sequence[float] | None = None
    ) -> torch.Tensor:
        """The kernel's fixed basis on this grid, float64 ``(k**n_dim, k, ..., k)``:
        ``ℓ (e_j - e_c) / h`` for every stencil point ``j`` (centre ``c``), so that
        ``kernel = Σ_j coefficients[..., j] basis[j]``."""
        if spacing is None:
            spacing = grid_spacing(grid_shape, self.boundary, self.domain_length)
        points = self.kernel_size**self.n_dim
        basis = torch.eye(points, dtype=torch.float64)
        basis[:, points // 2] -= 1.0  # the centre is the middle point of the flattened stencil
        h = sum(spacing) / len(spacing)
        return (basis * (self.length_scale / h)).view(points, *([self.kernel_size] * self.n_dim))

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"boundary={self.boundary!r}, length_scale={self.length_scale:g}"
        )
