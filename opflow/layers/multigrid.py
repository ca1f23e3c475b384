"""A learned multigrid V-cycle as a linear operator ``f -> u`` (MgNO's MgConv).

He, Liu & Xu, "MgNO: Efficient Parameterization of Linear Operators via Multigrid", ICLR 2024.
A linear operator between channel fields is parameterised by one V-cycle whose smoothers and
grid transfers are small convolutions:

* smoothing on level ``l``:  ``u <- u + S(f - A u)`` (``A``: u-channels -> f-channels and
  ``S``: f-channels -> u-channels, 3-point stencils per axis, no bias); on the finest level the
  first step is ``u = S f`` (start from ``u = 0``);
* restriction to level ``l + 1``: ``u <- Π u`` and ``f <- R f`` (stride-2, 3-point stencils),
  or ``f <- R (f - A u)`` with ``residual_restriction=True`` (a full-approximation-style
  residual; the public code's default is off, and the paper's parameter counts assume off);
* prolongation on the way up: ``u_l <- u_l + P u_{l+1}`` (transposed stride-2 convolution,
  4-point stencil per axis), optionally followed by a group norm, then post-smoothing. The
  coarsest level post-smooths right after pre-smoothing (the public code builds those steps
  but never runs them; the paper's configurations have none).

The boundary condition is the padding of every stencil: ``zero`` (Dirichlet), ``periodic`` or
``reflect`` (a mirror, a Neumann-like condition). Prolongation pads the coarse field the same
way before the transposed convolution, so periodic fields stay periodic.

Resolution: grid sizes halve (rounding up) from level to level until no axis has more than
``coarsest_points`` points, so the coarsest grid has a fixed *physical* size and the number of
levels follows the input grid. The weights of ``len(smoothing)`` levels are anchored at the
coarse end: on a grid ``2^k`` times finer, ``k`` extra fine levels reuse the finest level's
weights; on a coarser grid the finest levels are skipped. A 3-point stencil means a different
physical operator at a different spacing, so conv-based operators do not transfer across
resolutions the way spectral ones do; ``benchmarks/darcy_accuracy.py`` measures the effect.

Shapes: ``f`` is ``(batch, in_channels, *spatial)``, the output ``(batch, out_channels,
*spatial)``, for 1-, 2- or 3-D grids of any size (odd sizes included).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from opflow.errors import ConfigError, ShapeError

__all__ = ["Boundary", "MultigridConv", "level_sizes"]

Boundary = Literal["zero", "periodic", "reflect"]
_PADDING_MODE = {"zero": "zeros", "periodic": "circular", "reflect": "reflect"}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def level_sizes(shape: tuple[int, ...], coarsest_points: int) -> list[tuple[int, ...]]:
    """Grid sizes of the V-cycle's levels, finest first: halve (round up) until every axis has
    at most ``coarsest_points`` points. ``(64, 64), 3 -> [(64, 64), (32, 32), ..., (2, 2)]``."""
    sizes = [tuple(shape)]
    while max(sizes[-1]) > coarsest_points:
        sizes.append(tuple((n + 1) // 2 for n in sizes[-1]))
    return sizes


class _Smoothing(nn.Module):
    """``u <- u + S(f - A u)``; without ``A`` (the finest level's first step) ``u <- u + S f``.

    ``u = None`` stands for the zero field.
    """

    def __init__(self, conv: type[nn.Module], u_channels: int, f_channels: int, mode: str, A: bool):
        super().__init__()
        kwargs = dict(kernel_size=3, padding=1, bias=False, padding_mode=mode)
        self.A = conv(u_channels, f_channels, **kwargs) if A else None
        self.S = conv(f_channels, u_channels, **kwargs)

    def forward(self, u: torch.Tensor | None, f: torch.Tensor) -> torch.Tensor:
        if u is None:
            return self.S(f)
        residual = f if self.A is None else f - self.A(u)
        return u + self.S(residual)


class _Restriction(nn.Module):
    """``(u, f) -> (Π u, R f)`` or ``(Π u, R (f - A u))``: stride-2 stencils to the next level."""

    def __init__(
        self, conv: type[nn.Module], u_channels: int, f_channels: int, mode: str, residual: bool
    ):
        super().__init__()
        kwargs = dict(kernel_size=3, stride=2, padding=1, bias=False, padding_mode=mode)
        self.Pi = conv(u_channels, u_channels, **kwargs)
        self.R = conv(f_channels, f_channels, **kwargs)
        self.A = (
            conv(u_channels, f_channels, kernel_size=3, padding=1, bias=False, padding_mode=mode)
            if residual
            else None
        )

    def forward(self, u: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        residual = f if self.A is None else f - self.A(u)
        return self.Pi(u), self.R(residual)


class _Prolongation(nn.Module):
    """``P``: coarse ``(B, C, *m)`` -> fine ``(B, C, *n)`` by a stride-2 transposed convolution
    with a 4-point stencil per axis; the coarse field is padded by the boundary condition."""

    def __init__(self, channels: int, n_dim: int, boundary: Boundary):
        super().__init__()
        self.n_dim, self.boundary = n_dim, boundary
        self.weight = nn.Parameter(torch.empty(channels, channels, *([4] * n_dim)))
        # the initialisation nn.ConvTranspose uses: kaiming-uniform over fan-in
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))

    def forward(self, coarse: torch.Tensor, fine_shape: tuple[int, ...]) -> torch.Tensor:
        transpose = _CONV_TRANSPOSE[self.n_dim]
        if self.boundary == "zero":
            fine = transpose(coarse, self.weight, stride=2, padding=1)
        else:  # pad by one coarse cell, then crop the extra two fine cells per side
            padded = F.pad(coarse, [1] * (2 * self.n_dim), mode=_PADDING_MODE[self.boundary])
            fine = transpose(padded, self.weight, stride=2, padding=3)
        # 2 * ceil(n / 2) >= n: crop the odd axes back to the fine grid
        return fine[(..., *(slice(0, n) for n in fine_shape))]


class MultigridConv(nn.Module):
    """One learned V-cycle ``f (B, in_channels, *s) -> u (B, out_channels, *s)``.

    Parameters
    ----------
    in_channels, out_channels:
        Channels of ``f`` and of ``u``.
    smoothing:
        ``[[pre, post], ...]``, one pair per level (finest first): smoothing steps before
        restriction and after prolongation. ``len(smoothing)`` is the number of levels on the
        grid the model is built for (see the module docstring for other grids).
    n_dim:
        Spatial dimensions (1, 2 or 3).
    boundary:
        ``zero``, ``periodic`` or ``reflect``: the padding of every stencil.
    coarsest_points:
        The coarsest level has at most this many points per axis; sets the level count per
        input grid. ``None``: always ``len(smoothing)`` levels.
    residual_restriction:
        Restrict ``f - A u`` instead of ``f``.
    norm:
        Group norm (one group, per-channel affine) after each prolongation, as MgNO does for
        Navier–Stokes (the public code's LayerNorm over a fixed grid cannot change resolution).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        smoothing: list[list[int]],
        n_dim: int = 2,
        boundary: Boundary = "zero",
        coarsest_points: int | None = 3,
        residual_restriction: bool = False,
        norm: bool = False,
    ):
        super().__init__()
        if n_dim not in _CONV:
            raise ConfigError(f"n_dim={n_dim}", "1, 2 or 3", "use a 1-, 2- or 3-D grid")
        if boundary not in _PADDING_MODE:
            raise ConfigError(
                f"boundary={boundary!r}",
                f"one of {sorted(_PADDING_MODE)}",
                "zero for Dirichlet data (Darcy), periodic for periodic data (Navier–Stokes)",
            )
        pairs = [list(p) for p in smoothing]
        if not pairs or any(len(p) != 2 or min(p) < 0 for p in pairs) or pairs[0][0] < 1:
            raise ConfigError(
                f"smoothing={smoothing!r}",
                "a non-empty list of [pre, post] pairs of counts >= 0, with pre >= 1 on the "
                "finest level",
                "e.g. [[1, 0], [1, 0], [1, 0], [1, 0], [1, 0], [2, 0]]",
            )
        if coarsest_points is not None and coarsest_points < 1:
            raise ConfigError(
                f"coarsest_points={coarsest_points}", "an integer >= 1 or None", "use e.g. 3"
            )
        conv, mode = _CONV[n_dim], _PADDING_MODE[boundary]
        self.n_dim, self.boundary = n_dim, boundary
        self.smoothing, self.coarsest_points = pairs, coarsest_points
        self.in_channels, self.out_channels = in_channels, out_channels
        c_u, c_f = out_channels, in_channels
        self.pre = nn.ModuleList()
        self.post = nn.ModuleList()
        for level, (n_pre, n_post) in enumerate(pairs):
            self.pre.append(
                nn.ModuleList(
                    _Smoothing(conv, c_u, c_f, mode, A=level > 0 or step > 0)
                    for step in range(n_pre)
                )
            )
            self.post.append(
                nn.ModuleList(_Smoothing(conv, c_u, c_f, mode, A=True) for _ in range(n_post))
            )
        self.restrict = nn.ModuleList(
            _Restriction(conv, c_u, c_f, mode, residual_restriction) for _ in pairs[1:]
        )
        self.prolong = nn.ModuleList(_Prolongation(c_u, n_dim, boundary) for _ in pairs[1:])
        self.norms = nn.ModuleList(
            nn.GroupNorm(1, c_u) if norm else nn.Identity() for _ in pairs[1:]
        )

    def levels_for(self, shape: tuple[int, ...]) -> list[tuple[tuple[int, ...], int]]:
        """``[(grid size, stored level), ...]`` finest first: which weights run on which grid."""
        n_stored = len(self.smoothing)
        if self.coarsest_points is None:
            sizes = [tuple(shape)]
            for _ in range(n_stored - 1):
                sizes.append(tuple((n + 1) // 2 for n in sizes[-1]))
        else:
            sizes = level_sizes(shape, self.coarsest_points)
        offset = len(sizes) - n_stored  # > 0: extra fine levels; < 0: skipped fine levels
        return [(size, max(r - offset, 0)) for r, size in enumerate(sizes)]

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim != self.n_dim + 2 or f.shape[1] != self.in_channels:
            raise ShapeError(
                f"MultigridConv input of shape {tuple(f.shape)}",
                f"(batch, {self.in_channels}, *spatial) with {self.n_dim} spatial dims",
                "check the channel count and the spatial dims",
            )
        levels = self.levels_for(tuple(f.shape[2:]))
        us: list[torch.Tensor] = []
        fs: list[torch.Tensor] = []
        u: torch.Tensor | None = None
        for r, (_, stored) in enumerate(levels):
            if r > 0:  # transfer down with the weights between this level and the finer one
                u, f = self.restrict[max(stored - 1, 0)](u, f)
            for step in self.pre[stored]:
                u = step(u, f)
            if u is None:  # a level without pre-smoothing carries the zero field
                u = f.new_zeros(f.shape[0], self.out_channels, *f.shape[2:])
            if r == len(levels) - 1:  # nothing comes up to the coarsest level: post-smooth now
                for step in self.post[stored]:
                    u = step(u, f)
            us.append(u)
            fs.append(f)
        for r in range(len(levels) - 2, -1, -1):
            size, stored = levels[r]
            transfer = max(levels[r + 1][1] - 1, 0)
            u = self.norms[transfer](us[r] + self.prolong[transfer](us[r + 1], size))
            for step in self.post[stored]:
                u = step(u, fs[r])
            us[r] = u
        return us[0]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels} -> {self.out_channels}, smoothing={self.smoothing}, "
            f"boundary={self.boundary!r}, coarsest_points={self.coarsest_points}"
        )
