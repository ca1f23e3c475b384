"""Pointwise (1x1) channel maps: the MLPs and skips of an FNO block.

All act on ``(B, C, *spatial)`` tensors and are resolution independent. Each module states its
map; where a hand-written autograd node computes it faster (:mod:`opflow.layers.fused`) the
module uses it, and falls back to plain torch ops under autocast or compilation.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from opflow.layers.fused import ChannelLinearFn, GeluMLPFn, SoftGatingFn
from opflow.spectral.precision import plain_ops_only

__all__ = ["ChannelLinear", "ChannelMLP", "Identity", "SoftGating", "make_skip"]


class ChannelLinear(nn.Module):
    """``y[b, o, ...] = sum_i W[o, i] x[b, i, ...] (+ b[o])``: a 1x1 convolution in any dim.

    ``forward(x, add_to=t)`` returns ``t + W x`` computed in place in ``t`` (which must be a
    fresh, unsaved tensor of the output shape): one full-size temporary fewer in a skip sum.
    """

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        bound = in_channels**-0.5  # the default init of torch's 1x1 convolutions
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels).uniform_(-bound, bound))
        self.bias = (
            nn.Parameter(torch.empty(out_channels).uniform_(-bound, bound)) if bias else None
        )

    def forward(self, x: torch.Tensor, add_to: torch.Tensor | None = None) -> torch.Tensor:
        if plain_ops_only(x):  # autocast picks the GEMM's precision; a new tensor, not in place
            y = torch.matmul(self.weight, x.flatten(2)).unflatten(2, x.shape[2:])
            y = y if self.bias is None else y + self.bias.view(-1, *[1] * (x.ndim - 2))
            return y if add_to is None else add_to + y
        return ChannelLinearFn.apply(x, self.weight, self.bias, add_to)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}"


class ChannelMLP(nn.Module):
    """``n_layers`` channel-linear maps with ``non_linearity`` between them (not after the last)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        hidden_channels: int | None = None,
        n_layers: int = 2,
        non_linearity: Callable[[torch.Tensor], torch.Tensor] = F.gelu,
        dropout: float = 0.0,
    ):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        hidden_channels = in_channels if hidden_channels is None else hidden_channels
        sizes = [in_channels] + [hidden_channels] * (n_layers - 1) + [out_channels]
        self.fcs = nn.ModuleList(ChannelLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.non_linearity = non_linearity
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

    @property
    def is_gelu_pair(self) -> bool:
        """Two biased layers, GELU between, no dropout: computed as one autograd node."""
        return (
            len(self.fcs) == 2
            and self.non_linearity is F.gelu
            and self.dropout is None
            and all(fc.bias is not None for fc in self.fcs)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.is_gelu_pair and not plain_ops_only(x):
            first, second = self.fcs
            return GeluMLPFn.apply(x, first.weight, first.bias, second.weight, second.bias)
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i < len(self.fcs) - 1:
                x = self.non_linearity(x)
            if self.dropout is not None:
                x = self.dropout(x)
        return x


class SoftGating(nn.Module):
    """Per-channel scaling ``w[c] * x`` (neuraloperator's "soft-gating" skip).

    ``forward(x, add_to=t)`` returns ``t + w * x`` computed in place in ``t``.
    """

    def __init__(self, channels: int, n_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, *([1] * n_dim)))

    def forward(self, x: torch.Tensor, add_to: torch.Tensor | None = None) -> torch.Tensor:
        if plain_ops_only(x):
            return self.weight * x if add_to is None else add_to + self.weight * x
        return SoftGatingFn.apply(x, self.weight, add_to)


class Identity(nn.Module):
    """``x`` (or ``t + x`` in place in ``t`` with ``add_to=t``)."""

    def forward(self, x: torch.Tensor, add_to: torch.Tensor | None = None) -> torch.Tensor:
        if add_to is None:
            return x
        return add_to + x if plain_ops_only(x) else add_to.add_(x)


def make_skip(
    kind: str | None, in_channels: int, out_channels: int, n_dim: int
) -> nn.Module | None:
    """Skip connection by name: ``linear`` (1x1, no bias), ``soft-gating``, ``identity``, None."""
    if kind is None:
        return None
    kind = kind.lower()
    if kind == "linear":
        return ChannelLinear(in_channels, out_channels, bias=False)
    if kind == "soft-gating":
        return SoftGating(in_channels, n_dim)
    if kind == "identity":
        return Identity()
    from opflow.errors import ConfigError

    raise ConfigError(
        f"Unknown skip connection {kind!r}",
        "one of 'linear', 'soft-gating', 'identity' or None",
        "fix the skip name in the model arguments",
    )
