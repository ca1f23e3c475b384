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
levels follows the input grid. The ``len(smoothing)`` learned levels stay on the grid
spacings they were trained on: a grid ``2^k`` times finer gets ``k`` extra fine levels with
*fixed* geometric transfers (full-weighting restriction of ``f`` on the way down, linear
interpolation of ``u`` on the way up, padded by the boundary condition), and a grid ``2^k``
times coarser is interpolated up ``k`` levels and the result read back at its points. A
learned 3-point stencil is a different physical operator at another spacing, which is why
conv-based operators do not transfer across resolutions by themselves; with fixed extra
levels the learned ones never see another spacing, and the output on a finer grid carries
the detail of the trained resolution (``benchmarks/darcy_accuracy.py`` measures it). Grids
that are not a power-of-2 multiple of the trained one run, but their levels' spacings drift.

Shapes: ``f`` is ``(batch, in_channels, *spatial)``, the output ``(batch, out_channels,
*spatial)``, for 1-, 2- or 3-D grids of any size (odd sizes included).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.layers.padding import CONV_PADDING_MODE, Boundary, check_boundary, pad_boundary

__all__ = [
    "Boundary",
    "MultigridConv",
    "coarser",
    "finer",
    "full_weighting",
    "inject",
    "interpolate",
    "level_sizes",
    "transfer_path",
]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}


def coarser(grid: tuple[int, ...]) -> tuple[int, ...]:
    """The next level's grid: ``ceil(n / 2)`` (every other point, both ends of an odd grid)."""
    return tuple((n + 1) // 2 for n in grid)


def finer(grid: tuple[int, ...]) -> tuple[int, ...]:
    """The grid whose :func:`coarser` is ``grid``: ``2n - 1`` for odd ``n`` (vertex grids
    keep both ends), ``2n`` for even."""
    return tuple(2 * n - 1 if n % 2 else 2 * n for n in grid)


def inject(u: torch.Tensor) -> torch.Tensor:
    """``(B, C, *s)`` -> values at the next coarser grid's points (every other point per axis,
    both ends of an odd grid): how opflow's multi-resolution datasets define coarse grids."""
    return u[(..., *([slice(None, None, 2)] * (u.ndim - 2)))].contiguous()


def _stencil(weights: list[float], like: torch.Tensor) -> torch.Tensor:
    """Depthwise tensor-product stencil ``(C, 1, k, ..., k)`` for ``like`` ``(B, C, *s)``."""
    line = torch.tensor(weights, dtype=like.dtype, device=like.device)
    kernel = line
    for _ in range(like.ndim - 3):
        kernel = kernel[..., None] * line
    return kernel.expand(like.shape[1], 1, *kernel.shape).contiguous()


def full_weighting(f: torch.Tensor, boundary: Boundary) -> torch.Tensor:
    """Fixed restriction to the next coarser grid: ``[1, 2, 1] / 4`` per axis, stride 2."""
    n_dim = f.ndim - 2
    padded = pad_boundary(f, 1, boundary)
    conv = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n_dim]
    return conv(padded, _stencil([0.25, 0.5, 0.25], f), stride=2, groups=f.shape[1])


def interpolate(u: torch.Tensor, fine: tuple[int, ...], boundary: Boundary) -> torch.Tensor:
    """Fixed prolongation onto the grid ``fine`` (the :func:`finer` grid of ``u``'s): linear
    interpolation, ``[1/2, 1, 1/2]`` per axis, the coarse field padded by the boundary."""
    n_dim = u.ndim - 2
    padded = pad_boundary(u, 1, boundary)
    kernel = _stencil([0.5, 1.0, 0.5], u)
    full = _CONV_TRANSPOSE[n_dim](padded, kernel, stride=2, groups=u.shape[1])
    return full[(..., *(slice(3, 3 + n) for n in fine))].contiguous()


def transfer_path(shape: tuple[int, ...], shift: int) -> list[tuple[int, ...]]:
    """Grids from ``shape`` ``|shift|`` levels coarser (``shift > 0``) or finer, ``shape``
    first."""
    path = [tuple(shape)]
    for _ in range(abs(shift)):
        path.append(coarser(path[-1]) if shift > 0 else finer(path[-1]))
    return path


def level_sizes(shape: tuple[int, ...], coarsest_points: int) -> list[tuple[int, ...]]:
    """Grid sizes of the V-cycle's levels, finest first: halve (round up) until every axis has
    at most ``coarsest_points`` points. ``(64, 64), 3 -> [(64, 64), (32, 32), ..., (2, 2)]``."""
    sizes = [tuple(shape)]
    while max(sizes[-1]) > coarsest_points:
        sizes.append(coarser(sizes[-1]))
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
            padded = pad_boundary(coarse, 1, self.boundary)
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
        check_boundary(boundary)
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
        conv, mode = _CONV[n_dim], CONV_PADDING_MODE[boundary]
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

    def plan(self, shape: tuple[int, ...]) -> tuple[int, list[tuple[int, ...]]]:
        """``(transfers, grids)`` for an input grid ``shape``.

        ``grids``: the grid of each stored level, finest first. ``transfers > 0``: the input
        is that many levels finer than the weights were built for, and is first restricted
        by full weighting that many times; ``transfers < 0``: it is coarser and is first
        interpolated (linearly) up; the result goes back the opposite way.
        """
        n_stored = len(self.smoothing)
        shift = 0
        if self.coarsest_points is not None:
            shift = len(level_sizes(shape, self.coarsest_points)) - n_stored
        grid = tuple(shape)
        for _ in range(max(shift, 0)):
            grid = coarser(grid)
        for _ in range(max(-shift, 0)):
            grid = finer(grid)
        grids = [grid]
        for _ in range(n_stored - 1):
            grids.append(coarser(grids[-1]))
        return shift, grids

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim != self.n_dim + 2 or f.shape[1] != self.in_channels:
            raise ShapeError(
                f"MultigridConv input of shape {tuple(f.shape)}",
                f"(batch, {self.in_channels}, *spatial) with {self.n_dim} spatial dims",
                "check the channel count and the spatial dims",
            )
        shift, grids = self.plan(tuple(f.shape[2:]))
        path = transfer_path(tuple(f.shape[2:]), shift)
        for grid in path[1:]:
            f = (
                full_weighting(f, self.boundary)
                if shift > 0
                else interpolate(f, grid, self.boundary)
            )
        u = self._cycle(f, grids)
        for grid in reversed(path[:-1]):
            u = interpolate(u, grid, self.boundary) if shift > 0 else inject(u)
        return u

    def _cycle(self, f: torch.Tensor, grids: list[tuple[int, ...]]) -> torch.Tensor:
        """The learned V-cycle over the stored levels, on the grids ``grids``."""
        us: list[torch.Tensor] = []
        fs: list[torch.Tensor] = []
        u: torch.Tensor | None = None
        last = len(grids) - 1
        for level in range(len(grids)):
            if level > 0:
                u, f = self.restrict[level - 1](u, f)
            for step in self.pre[level]:
                u = step(u, f)
            if level == last:  # nothing comes up to the coarsest level: post-smooth now
                for step in self.post[level]:
                    u = step(u, f)
            us.append(u)
            fs.append(f)
        for level in range(last - 1, -1, -1):
            u = self.norms[level](us[level] + self.prolong[level](us[level + 1], grids[level]))
            for step in self.post[level]:
                u = step(u, fs[level])
            us[level] = u
        return us[0]

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels} -> {self.out_channels}, smoothing={self.smoothing}, "
            f"boundary={self.boundary!r}, coarsest_points={self.coarsest_points}"
        )
