r"""GELU and its derivative, outside autograd, for the nodes that write their own backward.

.. math::

    \mathrm{GELU}(x) = x\,\Phi(x), \qquad \mathrm{GELU}'(x) = \Phi(x) + x\,\varphi(x)

with :math:`\Phi` and :math:`\varphi` the standard normal CDF and density (the exact GELU,
torch's ``approximate="none"``).

On the CPU torch's exact GELU is compute-bound — its ``erf`` goes through ``exp`` and a
division, 4–5× a multiply's time per value — and the FNO evaluates it, forward and backward,
on about 48 million values per fwd+bwd at 64², batch 16. Contiguous float32 CPU tensors
therefore go through a C kernel (``opflow/native/gelu.c``: a rational ``erf`` with no ``exp``,
AVX2 + FMA, torch's thread count): within ``2.5e-7 max(1, |x|)`` of float64 (torch's float32
op: 2.6e-7), faster than torch's op (``benchmarks/gelu.py``, figures in RESULTS.md). Anything else —
other dtypes or devices, strided or differently shaped tensors, a tensor autograd records, or
the kernel unavailable (:func:`opflow.native.status`) — takes torch's op, so float64 results
are torch's to the last bit.

``out`` may be one of the inputs (in place). :func:`affine_gelu` and its backward serve a
first layer with few inputs (an FNO's lifting): ``GELU(W x + b)`` without storing ``W x + b``.
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch

from opflow import native

__all__ = [
    "affine_gelu",
    "affine_gelu_backward",
    "affine_uses_kernel",
    "gelu",
    "gelu_backward",
    "uses_kernel",
]

_float_p, _size, _threads = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


@cache
def _kernel() -> ctypes.CDLL | None:
    library = native.load("gelu")
    if library is not None:
        library.opflow_gelu.argtypes = [_float_p, _float_p, _size, _threads]
        library.opflow_gelu_backward.argtypes = [_float_p, _float_p, _float_p, _size, _threads]
        affine = [_float_p] * 4 + [_size] * 4 + [_threads]
        library.opflow_affine_gelu.argtypes = affine
        library.opflow_affine_gelu_backward.argtypes = [_float_p] + affine
        for fn in (
            "opflow_gelu",
            "opflow_gelu_backward",
            "opflow_affine_gelu",
            "opflow_affine_gelu_backward",
        ):
            getattr(library, fn).restype = None
    return library


def uses_kernel(*tensors: torch.Tensor) -> bool:
    """Whether these tensors go through the C kernel: float32, CPU, contiguous, one shape, not
    recorded by autograd (torch's op is, so a caller under autograd keeps its gradient), and
    the kernel loaded."""
    shape = tensors[0].shape
    return (
        all(
            t.dtype == torch.float32
            and t.device.type == "cpu"
            and t.is_contiguous()
            and t.shape == shape
            for t in tensors
        )
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
        and _kernel() is not None
    )


def gelu(x: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``GELU(x)``, into ``out`` if given."""
    if not uses_kernel(x, x if out is None else out):
        return torch.ops.aten.gelu(x) if out is None else torch.ops.aten.gelu.out(x, out=out)
    out = torch.empty_like(x) if out is None else out
    _kernel().opflow_gelu(x.data_ptr(), out.data_ptr(), x.numel(), torch.get_num_threads())
    return out


def gelu_backward(
    grad: torch.Tensor, x: torch.Tensor, out: torch.Tensor | None = None
) -> torch.Tensor:
    """``grad * GELU'(x)``, into ``out`` if given (``out`` may be ``grad`` or ``x``)."""
    if not uses_kernel(grad, x, x if out is None else out):
        if out is None:
            return torch.ops.aten.gelu_backward(grad, x)
        return torch.ops.aten.gelu_backward.grad_input(grad, x, grad_input=out)
    out = torch.empty_like(x) if out is None else out
    _kernel().opflow_gelu_backward(
        grad.data_ptr(), x.data_ptr(), out.data_ptr(), x.numel(), torch.get_num_threads()
    )
    return out


MAX_AFFINE_INPUTS = 8  # the kernel's limit (MAX_AFFINE_INPUTS in gelu.c)


def affine_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``GELU(W x[b] + bias)``: ``(B, K, N) -> (B, C, N)`` for ``W`` ``(C, K)``.

    With the kernel (``K <= MAX_AFFINE_INPUTS``) the pre-activation is never stored: a layer
    with few inputs, like an FNO's lifting (the field and the grid), writes one full-size
    tensor where a GEMM and a GELU write two; :func:`affine_gelu_backward` recomputes it.
    """
    batch, k_in, n = x.shape
    if not affine_uses_kernel(x, weight, bias):
        return gelu(torch.baddbmm(bias[None, :, None], weight.expand(batch, -1, -1), x))
    out = x.new_empty(batch, weight.shape[0], n)
    _kernel().opflow_affine_gelu(
        *_ptrs(x, weight, bias, out), batch, k_in, weight.shape[0], n, torch.get_num_threads()
    )
    return out


def affine_gelu_backward(
    grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`affine_gelu` from the output's ``grad`` ``(B, C, N)``, which is
    overwritten with the pre-activation's gradient ``g`` (and returned first), then the
    weight's ``sum_b g[b] x[b]^T`` ``(C, K)`` and the bias's ``sum_{b,i} g[b, :, i]``."""
    batch, k_in, n = x.shape
    c_out = weight.shape[0]
    if not affine_uses_kernel(x, weight, bias, grad):
        pre = torch.baddbmm(bias[None, :, None], weight.expand(batch, -1, -1), x)
        g = gelu_backward(grad, pre, out=grad)
        return g, torch.bmm(g, x.transpose(1, 2)).sum(0), g.sum(dim=(0, 2))
    row_sums = x.new_empty(batch, c_out, k_in + 1)
    _kernel().opflow_affine_gelu_backward(
        *_ptrs(grad, x, weight, bias, row_sums), batch, k_in, c_out, n, torch.get_num_threads()
    )
    sums = row_sums.sum(0)
    return grad, sums[:, :k_in], sums[:, k_in]


def affine_uses_kernel(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, grad: torch.Tensor | None = None
) -> bool:
    """Whether :func:`affine_gelu` (with ``grad``: its backward) runs the kernel here."""
    shapes_fit = grad is None or grad.shape == (x.shape[0], weight.shape[0], x.shape[2])
    return (
        x.shape[1] <= MAX_AFFINE_INPUTS
        and shapes_fit
        and all(uses_kernel(t) for t in (x, weight, bias) + (() if grad is None else (grad,)))
    )


def _ptrs(*tensors: torch.Tensor) -> list[int]:
    return [t.data_ptr() for t in tensors]
