"""MgNO: a neural operator whose linear maps are multigrid V-cycles (He, Liu & Xu, ICLR 2024).

Layer ``i``: ``u <- σ(MgConv_i(u) + W_i u)`` with ``MgConv`` a learned V-cycle
(:class:`opflow.layers.multigrid.MultigridConv`) and ``W`` a pointwise linear map with bias.
There is no lifting layer: the first V-cycle maps the input channels straight to the hidden
ones; a bias-free pointwise projection gives the output. Boundary conditions enter through the
stencils' padding (``zero`` for Darcy, ``periodic`` for Navier–Stokes).

With the paper's Darcy configuration (1 -> 1 channels, 24 hidden, 4 layers, smoothing
``[[1, 0]] * 5 + [[2, 0]]``, zero boundary) the model has 572,661 parameters, the count of
the public code.

Resolution: the V-cycles' level count follows the grid (``coarsest_points``), and the learned
levels stay on the spacings they were trained on. On a grid ``2^k`` times finer the whole
network runs on the trained grid, reached by sampling the input at its points, and the output
is interpolated linearly back (``k`` fixed levels on top of the learned hierarchy); a coarser
grid is interpolated up and read back at its points. Per-layer transfers (what
:class:`~opflow.layers.multigrid.MultigridConv` does alone) would leave the pointwise layers on
the fine grid, fed with fields the training never produced: on Darcy that was 6x worse
zero-shot at 2x (0.093 against 0.015).
"""

from __future__ import annotations

import torch
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.layers.channel_mlp import ChannelLinear
from opflow.layers.multigrid import Boundary, MultigridConv, inject, interpolate, transfer_path
from opflow.models.registry import register

__all__ = ["MgNO"]

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


@register("MgNO")
class MgNO(nn.Module):
    """Multigrid neural operator ``(B, in_channels, *s) -> (B, out_channels, *s)``.

    Parameters
    ----------
    in_channels, out_channels, hidden_channels, n_layers:
        Channel counts and depth (the paper's Darcy model: 1, 1, 24, 4).
    smoothing:
        ``[[pre, post], ...]`` smoothing steps per level, finest first.
    boundary:
        ``zero`` (Dirichlet), ``periodic`` or ``reflect``.
    coarsest_points:
        The coarsest level keeps at most this many points per axis, so the level count follows
        the grid; ``None`` fixes it at ``len(smoothing)``. See :mod:`opflow.layers.multigrid`.
    residual_restriction, norm:
        See :class:`~opflow.layers.multigrid.MultigridConv` (``norm=True`` is MgNO's choice for
        Navier–Stokes).
    global_residual:
        Add the last ``out_channels`` input channels to the output (MgNO's skip for
        time-stepping: the model learns the increment). Needs ``in_channels >= out_channels``.
    activation:
        ``gelu``, ``relu``, ``silu`` or ``tanh``.
    n_dim:
        Spatial dimensions (1, 2 or 3).
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        hidden_channels: int = 24,
        n_layers: int = 4,
        smoothing: list[list[int]] = ([1, 0],) * 5 + ([2, 0],),
        boundary: Boundary = "zero",
        coarsest_points: int | None = 3,
        residual_restriction: bool = False,
        norm: bool = False,
        global_residual: bool = False,
        activation: str = "gelu",
        n_dim: int = 2,
    ):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"activation={activation!r}", f"one of {sorted(_ACTIVATIONS)}", "pick one of them"
            )
        if global_residual and in_channels < out_channels:
            raise ConfigError(
                f"global_residual with in_channels={in_channels} < out_channels={out_channels}",
                "at least as many input channels as output channels",
                "set global_residual: false",
            )
        if n_layers < 1 or hidden_channels < 1:
            raise ConfigError(
                f"n_layers={n_layers}, hidden_channels={hidden_channels}",
                "positive integers",
                "fix model.args",
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.n_dim, self.global_residual, self.boundary = n_dim, global_residual, boundary
        widths = [in_channels] + [hidden_channels] * n_layers
        self.cycles = nn.ModuleList(
            MultigridConv(
                c_in,
                hidden_channels,
                smoothing,
                n_dim=n_dim,
                boundary=boundary,
                coarsest_points=coarsest_points,
                residual_restriction=residual_restriction,
                norm=norm,
            )
            for c_in in widths[:-1]
        )
        self.skips = nn.ModuleList(ChannelLinear(c_in, hidden_channels) for c_in in widths[:-1])
        self.projection = ChannelLinear(hidden_channels, out_channels, bias=False)
        self.activation = _ACTIVATIONS[activation]()
        if n_dim in _CHANNELS_LAST:  # the stencils in the activations' order (forward)
            self.cycles.to(memory_format=_CHANNELS_LAST[n_dim])

    def forward(self, x):
        if x.ndim != self.n_dim + 2 or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"MgNO input of shape {tuple(x.shape)}",
                f"(batch, {self.in_channels}, *spatial) with {self.n_dim} spatial dims",
                "check in_channels and the data's variables and time windows",
            )
        # another resolution: run every layer on the grid the levels were built for, reached by
        # sampling the input at its points (finer input) or interpolating it (coarser input)
        shift, _ = self.cycles[0].plan(tuple(x.shape[2:]))
        path = transfer_path(tuple(x.shape[2:]), shift)
        u = x
        for grid in path[1:]:
            u = inject(u) if shift > 0 else interpolate(u, grid, self.boundary)
        # channels-last activations: oneDNN's convolutions (most of a step: ~100 small 3x3
        # stencils per forward) run faster on them at MgNO's widths on the CPU (a Darcy step 1.2x)
        u = _channels_last(u)
        for cycle, skip in zip(self.cycles, self.skips):
            u = self.activation(skip(u, add_to=_channels_last(cycle(u))))
        u = self.projection(u).contiguous()
        for grid in reversed(path[:-1]):
            u = interpolate(u, grid, self.boundary) if shift > 0 else inject(u)
        if self.global_residual:
            u = u + x[:, -self.out_channels :]
        return u


_CHANNELS_LAST = {2: torch.channels_last, 3: torch.channels_last_3d}  # by spatial dims


def _channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` in channels-last memory order where torch has one (2-D and 3-D grids)."""
    fmt = _CHANNELS_LAST.get(x.ndim - 2)
    return x if fmt is None else x.contiguous(memory_format=fmt)
