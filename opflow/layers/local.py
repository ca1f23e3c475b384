"""Local kernels that stay valid as the grid is refined (Liu-Schiaffini et al., ICML 2024).

:class:`DifferentialConv` — a learned ``k``-point stencil per axis whose weights sum to zero,
divided by the grid spacing ``h``:

.. math::

    (D x)_i = \\frac{1}{h} \\sum_j \\tilde w_j \\, x_{i + d_j},
    \\qquad \\tilde w_j = w_j - \\delta_{j, c} \\sum_l w_l,

with ``d_j`` the stencil offsets (in grid points) and ``c`` the centre. Because the weights sum
to zero, a Taylor expansion gives ``D x = Σ_j w̃_j (d_j · ∇x) + O(h)``: a directional
derivative, the same at every resolution, reached at first order in ``h``. ``h`` comes from
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
from opflow.layers.padding import Boundary, check_boundary, pad_boundary

__all__ = ["DifferentialConv", "grid_spacing"]

_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def grid_spacing(
    shape: Sequence[int], boundary: Boundary, domain_length: float | Sequence[float] = 1.0
) -> list[float]:
    """Spacing per axis of a uniform grid of ``shape`` points over ``domain_length``."""
    lengths = (
        [float(domain_length)] * len(shape)
        if isinstance(domain_length, int | float)
        else [float(v) for v in domain_length]
    )
    if boundary == "periodic":
        return [length / n for length, n in zip(lengths, shape)]
    return [length / max(n - 1, 1) for length, n in zip(lengths, shape)]


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
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        n_dim: int = 2,
        boundary: Boundary = "periodic",
        domain_length: float | Sequence[float] = 1.0,
    ):
        super().__init__()
        check_boundary(boundary)
        if kernel_size < 3 or kernel_size % 2 == 0 or n_dim not in _CONV:
            raise ConfigError(
                f"kernel_size={kernel_size}, n_dim={n_dim}",
                "an odd kernel_size >= 3 and n_dim in 1, 2, 3",
                "use kernel_size: 3",
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.n_dim = kernel_size, n_dim
        self.boundary, self.domain_length = boundary, domain_length
        fan_in = in_channels * kernel_size**n_dim
        bound = fan_in**-0.5  # the default uniform init of torch's convolutions
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
        if spacing is None:
            spacing = grid_spacing(x.shape[2:], self.boundary, self.domain_length)
        h = sum(spacing) / len(spacing)
        padded = pad_boundary(x, self.kernel_size // 2, self.boundary)
        return _CONV[self.n_dim](padded, self.stencil()) / h

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"boundary={self.boundary!r}"
        )
