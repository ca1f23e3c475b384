"""Pointwise (1x1) channel maps: the MLPs and skips of an FNO block.

All act on ``(B, C, *spatial)`` tensors and are resolution independent.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from opflow.layers.gelu import (
    affine_gelu,
    affine_gelu_backward,
    affine_uses_kernel,
    gelu,
    gelu_backward,
)
from opflow.spectral.precision import plain_ops_only

__all__ = ["ChannelLinear", "ChannelMLP", "Identity", "SoftGating", "make_skip"]


# Plain maps on flattened ``(B, C, N)`` tensors, outside autograd. The Functions below and the
# fused FNO block (:class:`opflow.models.fno.FNOBlock`) write their backward from them.


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
    accumulate: bool = False,
) -> torch.Tensor:
    """``W @ x[b] (+ bias)``: ``(B, Ci, N) -> (B, Co, N)``, into ``out`` if given (added to
    it with ``accumulate``)."""
    w = weight.expand(x.shape[0], -1, -1)
    if accumulate:
        if bias is not None:
            out.add_(bias[None, :, None])
        return out.baddbmm_(w, x)
    if bias is None:
        return torch.bmm(w, x, out=out)
    return torch.baddbmm(bias[None, :, None], w, x, out=out)


def linear_input_grad(
    grad: torch.Tensor, weight: torch.Tensor, add_to: torch.Tensor | None = None
) -> torch.Tensor:
    """``W^T @ grad[b]``: ``(B, Co, N) -> (B, Ci, N)``, added into ``add_to`` if given."""
    if add_to is not None:
        return add_to.baddbmm_(weight.T.expand(grad.shape[0], -1, -1), grad)
    if weight.shape[0] == 1:  # an outer product: a broadcast multiply, not a K = 1 GEMM
        return grad * weight.view(1, -1, 1)
    return torch.bmm(weight.T.expand(grad.shape[0], -1, -1), grad)


def linear_weight_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``sum_b grad[b] @ x[b]^T``: the ``(Co, Ci)`` weight gradient of :func:`linear`."""
    return torch.bmm(grad, x.transpose(1, 2)).sum(dim=0)


def channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum over batch and points of a * b`` per channel: ``(B, C, N)`` twice -> ``(C,)``."""
    return torch.linalg.vecdot(a, b, dim=-1).sum(dim=0)


def gelu_mlp_forward(
    x: torch.Tensor,
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    b2: torch.Tensor | None,
    out: torch.Tensor | None = None,
    accumulate: bool = False,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """``W2 GELU(W1 x + b1) + b2`` on ``(B, Ci, N)``, into ``out`` if given (added to it with
    ``accumulate``); also returns the hidden ``(h, GELU(h))``, ``h`` None when few inputs let
    the kernel compute ``GELU(h)`` without storing ``h`` (:func:`~opflow.layers.gelu.affine_gelu`).
    """
    if affine_uses_kernel(x, w1, b1):
        h, a = None, affine_gelu(x, w1, b1)
    else:
        h = linear(x, w1, b1)
        a = gelu(h)
    return linear(a, w2, b2, out=out, accumulate=accumulate), (h, a)


def gelu_mlp_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    hidden: tuple[torch.Tensor, torch.Tensor],
    w1: torch.Tensor,
    b1: torch.Tensor,
    w2: torch.Tensor,
    need_input: bool = True,
    input_grad_out: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, ...]:
    """Gradients of :func:`gelu_mlp_forward` for ``x, w1, b1, w2, b2``.

    The hidden gradient is formed in one buffer (GELU's backward in place); the input's is
    written into ``input_grad_out`` if given (``grad`` itself may be passed: it is read first).
    """
    h, a = hidden
    grad_w2, grad_b2 = linear_weight_grad(grad, a), grad.sum(dim=(0, 2))
    grad_a = linear_input_grad(grad, w2)
    if h is None:  # recomputed by the kernel, which also reduces the weight and bias gradients
        grad_h, grad_w1, grad_b1 = affine_gelu_backward(grad_a, x, w1, b1)
    else:
        grad_h = gelu_backward(grad_a, h, out=grad_a)
        grad_w1, grad_b1 = linear_weight_grad(grad_h, x), grad_h.sum(dim=(0, 2))
    grad_x = None
    if need_input:
        w1_t = w1.T.expand(x.shape[0], -1, -1)
        grad_x = torch.bmm(w1_t, grad_h, out=input_grad_out)
    return grad_x, grad_w1, grad_b1, grad_w2, grad_b2


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], x.shape[1], -1)


class _ChannelLinearFn(torch.autograd.Function):
    """``(B, Ci, *s) -> (B, Co, *s)`` by ``W @ x[b] (+ bias)``, with a lean backward.

    Autograd through ``baddbmm`` with an expanded weight would build the ``(B, Co, Ci)``
    gradient of the expanded weight through extra copies; here it is one ``bmm`` and a sum,
    and nothing but ``x`` and ``W`` is saved. With ``target`` given, the product is added
    into it in place and ``target`` is returned.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, target):
        flat = _flat(x)
        ctx.save_for_backward(flat, weight)
        ctx.has_bias = bias is not None
        ctx.x_shape = x.shape
        if target is not None:
            ctx.mark_dirty(target)
            linear(flat, weight, bias, out=_flat(target), accumulate=True)
            return target
        # allocated in its final shape: a view returned from a Function may not be modified
        # in place later (and skips are added into it)
        out = x.new_empty(x.shape[0], weight.shape[0], *x.shape[2:])
        linear(flat, weight, bias, out=_flat(out))
        return out

    @staticmethod
    def backward(ctx, grad):
        flat, weight = ctx.saved_tensors
        grad = _flat(grad)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = linear_input_grad(grad, weight).view(ctx.x_shape)
        if ctx.needs_input_grad[1]:
            grad_w = linear_weight_grad(grad, flat)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum(dim=(0, 2))
        grad_target = grad.view(ctx.x_shape[0], -1, *ctx.x_shape[2:])
        return grad_x, grad_w, grad_b, grad_target if ctx.needs_input_grad[3] else None


class _GeluMLPFn(torch.autograd.Function):
    """Two channel-linear layers with GELU between, as one node: the GELU backward runs in
    place on the hidden gradient, and an ``out_channels = 1`` projection's input gradient is a
    broadcast multiply."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2):
        flat = _flat(x)
        out = x.new_empty(x.shape[0], w2.shape[0], *x.shape[2:])
        _, hidden = gelu_mlp_forward(flat, w1, b1, w2, b2, out=_flat(out))
        ctx.save_for_backward(flat, *hidden, w1, b1, w2)
        ctx.x_shape = x.shape
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        flat, h, a, w1, b1, w2 = ctx.saved_tensors
        grad_x, *grads = gelu_mlp_backward(
            _flat(grad), flat, (h, a), w1, b1, w2, need_input=ctx.needs_input_grad[0]
        )
        return (None if grad_x is None else grad_x.view(ctx.x_shape)), *grads


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
            return _GeluMLPFn.apply(x, first.weight, first.bias, second.weight, second.bias)
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
    gradient with ``sum_to_size``: five full-size passes where ``grad * w`` and a per-channel
    dot product (:func:`channel_dot`) need two.
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
            grad_w = channel_dot(_flat(grad.contiguous()), _flat(x)).view(weight.shape)
        return grad_x, grad_w, grad if ctx.needs_input_grad[2] else None


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
        return _SoftGatingFn.apply(x, self.weight, add_to)


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
