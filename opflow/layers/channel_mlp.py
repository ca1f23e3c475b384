"""Pointwise (1x1) channel maps: the MLPs and skips of an FNO block.

All act on ``(B, C, *spatial)`` tensors and are resolution independent.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ChannelLinear", "ChannelMLP", "Identity", "SoftGating", "make_skip"]


class _ChannelLinearFn(torch.autograd.Function):
    """``(B, Ci, *s) -> (B, Co, *s)`` by ``W @ x[b] (+ bias)``, with a lean backward.

    Autograd through ``baddbmm`` with an expanded weight would build the ``(B, Co, Ci)``
    gradient of the expanded weight through extra copies; here it is one ``bmm`` and a sum,
    and nothing but ``x`` and ``W`` is saved. With ``target``
    given, the product is added into it in place and ``target`` is returned.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, target):
        flat = x.reshape(x.shape[0], x.shape[1], -1)
        ctx.save_for_backward(flat, weight)
        ctx.has_bias = bias is not None
        ctx.x_shape = x.shape
        w = weight.expand(x.shape[0], -1, -1)
        if target is not None:
            ctx.mark_dirty(target)
            flat_target = target.view(target.shape[0], target.shape[1], -1)
            if bias is not None:
                flat_target.add_(bias[None, :, None])
            flat_target.baddbmm_(w, flat)
            return target
        out = x.new_empty(x.shape[0], weight.shape[0], *x.shape[2:])
        flat_out = out.view(x.shape[0], weight.shape[0], -1)
        if bias is None:
            torch.bmm(w, flat, out=flat_out)
        else:
            torch.baddbmm(bias[None, :, None], w, flat, out=flat_out)
        return out

    @staticmethod
    def backward(ctx, grad):
        flat, weight = ctx.saved_tensors
        grad = grad.reshape(grad.shape[0], grad.shape[1], -1)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(weight.T.expand(flat.shape[0], -1, -1), grad).view(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(grad, flat.transpose(1, 2)).sum(dim=0)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 2))
        grad_target = grad.view(ctx.x_shape[0], -1, *ctx.x_shape[2:])
        return grad_x, grad_w, grad_b, grad_target if ctx.needs_input_grad[3] else None


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
        return _ChannelLinearFn.apply(x, self.weight, self.bias, add_to)

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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, fc in enumerate(self.fcs):
            x = fc(x)
            if i < len(self.fcs) - 1:
                x = self.non_linearity(x)
            if self.dropout is not None:
                x = self.dropout(x)
        return x


class _SoftGatingFn(torch.autograd.Function):
    """``w * x`` (or ``t + w * x`` in place in ``t``), with a backward of two passes.

    Autograd through ``addcmul_`` multiplies by the scalar ``value`` and reduces the weight
    gradient with ``sum_to_size``: five full-size passes where ``grad * w`` and a fused
    ``(grad * x).sum`` need two.
    """

    @staticmethod
    def forward(ctx, x, weight, target):
        ctx.save_for_backward(x, weight)
        if target is None:
            return weight * x
        ctx.mark_dirty(target)
        return target.addcmul_(weight, x)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        grad_x = grad * weight if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            reduce = [d for d in range(grad.ndim) if weight.shape[d] == 1]
            grad_w = (grad * x).sum(dim=reduce, keepdim=True)
        return grad_x, grad_w, grad if ctx.needs_input_grad[2] else None


class SoftGating(nn.Module):
    """Per-channel scaling ``w[c] * x`` (neuraloperator's "soft-gating" skip).

    ``forward(x, add_to=t)`` returns ``t + w * x`` computed in place in ``t``.
    """

    def __init__(self, channels: int, n_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, *([1] * n_dim)))

    def forward(self, x: torch.Tensor, add_to: torch.Tensor | None = None) -> torch.Tensor:
        return _SoftGatingFn.apply(x, self.weight, add_to)


class Identity(nn.Module):
    """``x`` (or ``t + x`` in place in ``t`` with ``add_to=t``)."""

    def forward(self, x: torch.Tensor, add_to: torch.Tensor | None = None) -> torch.Tensor:
        return x if add_to is None else add_to.add_(x)


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
