r"""The real inverse DFT of a mode-major spectrum, as a complex DFT of half the length.

:func:`irfftn_mode_major` is ``torch.fft.irfftn(·, norm="forward")`` of a spectrum held per
wavenumber, ``(M, C, B)`` (the layout of :mod:`opflow.spectral.multiplier`). With the last
axis' length ``N`` even, the field's even and odd points along it are packed as one complex
field of ``N / 2`` points, ``z(r, m) = y(r, 2m) + i y(r, 2m + 1)``, whose spectrum is, for
``k < N / 2`` (``r`` the other axes' wavenumbers),

.. math::

    Z(r, k) = \big(Y(r, k) + Y'(r, k)\big) + i\, e^{2\pi i k / N} \big(Y(r, k) - Y'(r, k)\big),
    \qquad Y'(r, k) = \overline{Y(-r, N/2 - k)},

so ``y`` is ``z = ifftn(Z)`` viewed as real numbers. The packing reads the mode-major layout
and writes ``Z`` batch-major in one pass (the C kernel ``opflow/native/half_spectrum.c``),
and the transform is one complex ``ifftn`` on half the points, where ``irfftn`` transforms the
other axes on all ``N / 2 + 1`` columns and then copies them for the last axis' real transform:
1.4-1.8x faster at 64² and 128² (``benchmarks/half_spectrum.py``, ``benchmarks/RESULTS.md``).
Like ``irfftn``, the columns ``k = 0`` and ``N / 2`` are read by their Hermitian parts. Where
the kernel cannot be used (no kernel, not the CPU, an odd last axis) it is ``irfftn`` itself.
"""

from __future__ import annotations

import ctypes
import math
from functools import cache

import torch

from opflow import native
from opflow.errors import ShapeError

__all__ = ["irfftn_mode_major", "uses_kernel"]

_pointer, _size = ctypes.c_void_p, ctypes.c_int64
_FUNCTIONS = {torch.complex64: ("opflow_pack_half_spectrum_f32", torch.float32),
              torch.complex128: ("opflow_pack_half_spectrum_f64", torch.float64)}  # fmt: skip


@cache
def _kernel() -> ctypes.CDLL | None:
    library = native.load("half_spectrum")
    if library is not None:
        for name, _ in _FUNCTIONS.values():
            function = getattr(library, name)
            function.argtypes = [_pointer] * 4 + [_size] * 4 + [ctypes.c_int]
            function.restype = None
    return library


@cache
def _mirror(other_axes: tuple[int, ...]) -> torch.Tensor:
    """``(R,)`` int64: the row-major index of ``-r`` (every axis' index negated modulo its
    size) for each multi-index ``r`` of ``other_axes``."""
    if not other_axes:
        return torch.zeros(1, dtype=torch.int64)
    index = torch.arange(math.prod(other_axes)).view(other_axes)
    negated = (-torch.arange(n) % n for n in other_axes)
    return index[torch.meshgrid(*negated, indexing="ij")].flatten().contiguous()


@cache
def _twiddles(n_last: int, dtype: torch.dtype) -> torch.Tensor:
    """``(N / 2, 2)``: ``cos`` and ``sin`` of ``2 pi k / N``, computed in float64."""
    angle = 2 * math.pi * torch.arange(n_last // 2, dtype=torch.float64) / n_last
    return torch.stack((angle.cos(), angle.sin()), dim=1).to(dtype).contiguous()


@torch.compiler.assume_constant_result  # torch.compile asks once, while it traces
def _kernel_loaded() -> bool:
    return _kernel() is not None


def uses_kernel(modes: torch.Tensor, spatial: tuple[int, ...]) -> bool:
    """Whether :func:`irfftn_mode_major` packs with the C kernel: a contiguous complex64 or
    complex128 spectrum on the CPU, an even last axis, and the kernel loaded."""
    return (
        modes.dtype in _FUNCTIONS
        and modes.device.type == "cpu"
        and modes.is_contiguous()
        and spatial[-1] % 2 == 0
        and _kernel_loaded()
    )


def irfftn_mode_major(modes: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """``modes`` ``(M, C, B)`` complex — per wavenumber of ``rfftn``'s output (row-major,
    ``M = n_1 ⋯ n_{d-1} (n_d / 2 + 1)``) the ``C x B`` matrix of the field's coefficients —
    -> the real field ``(B, C, *spatial)``: ``irfftn(·, s=spatial, norm="forward")``."""
    n_modes, channels, batch = modes.shape
    other, n_last = tuple(spatial[:-1]), spatial[-1]
    if n_modes != math.prod(other) * (n_last // 2 + 1):
        raise ShapeError(
            f"a spectrum of {n_modes} wavenumbers for a grid {tuple(spatial)}",
            f"{math.prod(other) * (n_last // 2 + 1)} wavenumbers (rfftn's output on that grid)",
            "pass the grid the spectrum was computed on",
        )
    dims = tuple(range(2, 2 + len(spatial)))
    if not uses_kernel(modes, spatial):
        half = (*other, n_last // 2 + 1)
        spectrum = modes.permute(2, 1, 0).reshape(batch, channels, *half)
        return torch.fft.irfftn(spectrum, s=spatial, dim=dims, norm="forward")
    field = torch.fft.ifftn(_pack(modes, list(spatial)), dim=dims, norm="forward")
    return torch.view_as_real(field).flatten(-2)


@torch.library.custom_op("opflow::pack_half_spectrum", mutates_args=(), device_types="cpu")
def _pack(modes: torch.Tensor, spatial: list[int]) -> torch.Tensor:
    """``Z`` ``(B, C, *spatial[:-1], N / 2)`` from the mode-major ``modes`` by the C kernel (an
    opaque op to ``torch.compile``, which cannot trace a ctypes call)."""
    _, channels, batch = modes.shape
    other, half = tuple(spatial[:-1]), spatial[-1] // 2
    packed = modes.new_empty(batch, channels, *other, half)
    name, real = _FUNCTIONS[modes.dtype]
    getattr(_kernel(), name)(
        modes.data_ptr(), packed.data_ptr(), _mirror(other).data_ptr(),
        _twiddles(spatial[-1], real).data_ptr(), math.prod(other), half, channels, batch,
        torch.get_num_threads(),
    )  # fmt: skip
    return packed


@_pack.register_fake
def _(modes: torch.Tensor, spatial: list[int]) -> torch.Tensor:
    _, channels, batch = modes.shape
    return modes.new_empty(batch, channels, *spatial[:-1], spatial[-1] // 2)
