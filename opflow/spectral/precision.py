"""Spectral layers compute in float32 (or float64) whatever the surrounding precision, and
opflow's hand-written autograd nodes step aside where torch must see plain ops.

Under ``torch.autocast`` (mixed-precision training) products run in bfloat16/float16, but a
spectral transform in half precision loses the small high-wavenumber coefficients to rounding,
and cuFFT takes half precision only on power-of-two sizes: PhysicsNeMo and makani keep their
FFTs in float32 too. :func:`full_precision` wraps a layer's ``forward`` so that it turns
autocast off and casts a half-precision input up.

The hand-written nodes (fused FNO block, GELU MLP, channel linear maps; the native GELU
kernel) compute in the dtype they are given and write their GEMMs into preallocated
outputs; they cannot mix dtypes as autocast does, and ``torch.compile`` cannot trace a C
kernel, nor can an exporter put one in a file. :func:`plain_ops_only` says when they give way
to the composed torch modules, which compute the same values.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch

__all__ = ["full_precision", "plain_ops_only"]

_HALF = (torch.float16, torch.bfloat16)


def plain_ops_only(x: torch.Tensor) -> bool:
    """True under autocast on ``x``'s device or while ``torch.compile`` or ``torch.export``
    (and so ``opflow export``) traces."""
    return torch.is_autocast_enabled(x.device.type) or torch.compiler.is_compiling()


def full_precision(forward: Callable) -> Callable:
    """Decorate ``forward(self, x, ...)``: with autocast on, run it with autocast off and
    ``x`` in float32 if it came in half precision."""

    @functools.wraps(forward)
    def wrapper(self, x: torch.Tensor, *args, **kwargs):
        device = x.device.type
        if not torch.is_autocast_enabled(device):
            return forward(self, x, *args, **kwargs)
        with torch.autocast(device, enabled=False):
            return forward(self, x.float() if x.dtype in _HALF else x, *args, **kwargs)

    return wrapper
