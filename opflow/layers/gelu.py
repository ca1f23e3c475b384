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
op: 2.6e-7) and 1.3–1.8× faster than torch's op (``benchmarks/gelu.py``). Anything else —
other dtypes or devices, strided or differently shaped tensors, a tensor autograd records, or
the kernel unavailable (:func:`opflow.native.status`) — takes torch's op, so float64 results
are torch's to the last bit.

``out`` may be one of the inputs (in place).
"""

from __future__ import annotations

import ctypes
from functools import cache

import torch

from opflow import native

__all__ = ["gelu", "gelu_backward", "uses_kernel"]

_float_p, _size, _threads = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int


@cache
def _kernel() -> ctypes.CDLL | None:
    library = native.load("gelu")
    if library is not None:
        library.opflow_gelu.argtypes = [_float_p, _float_p, _size, _threads]
        library.opflow_gelu_backward.argtypes = [_float_p, _float_p, _float_p, _size, _threads]
        library.opflow_gelu.restype = library.opflow_gelu_backward.restype = None
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
