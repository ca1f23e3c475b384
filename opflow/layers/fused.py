"""Fast paths of the pointwise layers and the FNO block: hand-written autograd nodes.

Each node computes exactly what a composition of plain modules computes (the reference:
:class:`~opflow.layers.channel_mlp.ChannelLinear`, :class:`~opflow.layers.channel_mlp.ChannelMLP`,
:class:`~opflow.layers.channel_mlp.SoftGating`, :class:`~opflow.layers.fno_block.FNOBlock`
with ``fuse = False``), with fewer passes through memory: skips added in place into fresh
outputs, gradients built in one buffer, GELU backwards in place, a weight gradient as one
``bmm`` and a sum. The modules choose these nodes when they apply; tests hold every node to its
reference composition (1e-12 in float64). Why each exists and what it gains:
``docs/architecture.md`` (Models).

The plain maps at the top act on flattened ``(B, C, N)`` tensors outside autograd; the nodes
write their backward from them.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from opflow.layers.gelu import (
    affine_gelu,
    affine_gelu_backward,
    affine_uses_kernel,
    gelu,
    gelu_backward,
)
from opflow.spectral.backends.gemm import gemm_conv_backward, gemm_conv_forward

__all__ = [
    "ChannelLinearFn",
    "FNOBlockFn",
    "GeluMLPFn",
    "SoftGatingFn",
    "channel_dot",
    "gelu_mlp_backward",
    "gelu_mlp_forward",
    "linear",
    "linear_input_grad",
    "linear_weight_grad",
]


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


class ChannelLinearFn(torch.autograd.Function):
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
            if target.is_contiguous():
                linear(flat, weight, bias, out=_flat(target), accumulate=True)
            else:  # reshaping would copy it, and the sum would land in the copy
                product = x.new_empty(x.shape[0], weight.shape[0], *x.shape[2:])
                linear(flat, weight, bias, out=_flat(product))
                target.add_(product)
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


class GeluMLPFn(torch.autograd.Function):
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


class SoftGatingFn(torch.autograd.Function):
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


class FNOBlockFn(torch.autograd.Function):
    """The default FNO block (:class:`~opflow.layers.fno_block.FNOBlock`) as one autograd node.

    Inputs: ``x`` ``(B, C, *s)``; the spectral conv's weight and bias; the linear skip's
    ``W_skip``; the channel MLP's ``w1, b1, w2, b2``; the soft gate ``G``. Composed, the block's
    input feeds three branches, so autograd sums three full-size gradients, and every GELU
    backward and gate reduction allocates a full-size temporary. Here ``x``'s gradient is
    built in one buffer (the gate's share, then the skip and the spectral conv add into it),
    the GELU backwards run in place on buffers this node owns, and the MLP's input gradient
    reuses the buffer of the gate's weight-gradient product. The gain is measured in
    ``benchmarks/RESULTS.md``.
    """

    @staticmethod
    def forward(ctx, x, conv_weight, conv_bias, skip_weight, w1, b1, w2, b2, gate, n_modes, last):
        batch, channels, *spatial = x.shape
        weight = conv_weight.reshape(-1, channels, channels, 2)
        y, conv_saved = gemm_conv_forward(x, weight, conv_bias, n_modes, tuple(spatial))
        flat_x, flat_y = x.view(batch, channels, -1), y.view(batch, channels, -1)
        linear(flat_x, skip_weight, out=flat_y, accumulate=True)
        act_y = flat_y if last else gelu(flat_y)
        # the MLP's output GEMM adds into b2 + G x: one pass fewer than adding the gate after
        # (torch.addcmul with a broadcast first operand takes a slow path: 4x a mul)
        z = torch.mul(flat_x, gate.view(1, -1, 1)).add_(b2.view(1, -1, 1))
        _, hidden = gelu_mlp_forward(act_y, w1, b1, w2, None, out=z, accumulate=True)
        out = z if last else gelu(z)
        ctx.save_for_backward(flat_x, flat_y, act_y, *hidden, z, skip_weight, w1, b1, w2, gate)
        ctx.conv_saved, ctx.n_modes, ctx.last = conv_saved, n_modes, last
        ctx.shapes = (x.shape, conv_weight.shape, None if conv_bias is None else conv_bias.shape)
        return out.view(x.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        flat_x, flat_y, act_y, h, a, z, skip_weight, w1, b1, w2, gate = ctx.saved_tensors
        x_shape, weight_shape, bias_shape = ctx.shapes
        grad_out = grad_out.contiguous().view(flat_x.shape)
        # the engine's gradient is not ours to overwrite; from here on every buffer is
        grad_z = grad_out if ctx.last else gelu_backward(grad_out, z)
        need_x = ctx.needs_input_grad[0]
        # the gate's gradient sum(grad_z * x) goes through a buffer that then takes the MLP's
        # input gradient: one full-size allocation for both
        product = torch.mul(grad_z, flat_x)
        grad_gate = product.sum(dim=(0, 2)).view(gate.shape)
        grad_act_y, grad_w1, grad_b1, grad_w2, grad_b2 = gelu_mlp_backward(
            grad_z, act_y, (h, a), w1, b1, w2, input_grad_out=product
        )
        # grad_z is now only needed for the gate's share of the input gradient
        grad_x = None
        if need_x:
            gate_column = gate.view(1, -1, 1)
            grad_x = torch.mul(grad_z, gate_column) if ctx.last else grad_z.mul_(gate_column)
        grad_y = grad_act_y if ctx.last else gelu_backward(grad_act_y, flat_y, out=grad_act_y)
        grad_skip = linear_weight_grad(grad_y, flat_x)
        if need_x:
            linear_input_grad(grad_y, skip_weight, add_to=grad_x)
            grad_x = grad_x.view(x_shape)
        _, grad_weight, grad_bias = gemm_conv_backward(
            grad_y.view(x_shape), ctx.conv_saved, ctx.n_modes, x_shape, need_x, add_to=grad_x
        )
        return (
            grad_x,
            grad_weight.view(weight_shape),
            None if bias_shape is None else grad_bias.view(bias_shape),
            grad_skip,
            grad_w1,
            grad_b1,
            grad_w2,
            grad_b2,
            grad_gate,
            None,
            None,
        )
