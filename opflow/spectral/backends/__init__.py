"""Backends of the spectral core, chosen at one dispatch point (:func:`select_backend`).

Every backend implements the same two maps on the canonical spectral layout
``(M_total, B, 2*C)`` and is tested against ``fft``:

* ``analyze(x, n_modes) -> spec``
* ``synthesize(spec, n_modes, channels, output_shape) -> field``
"""

from __future__ import annotations

import math
from types import ModuleType

import torch

from opflow.errors import BackendError
from opflow.spectral.backends import fft, gemm

__all__ = ["BACKENDS", "get_backend", "select_backend"]

BACKENDS: dict[str, ModuleType] = {"fft": fft, "gemm": gemm}


def get_backend(name: str) -> ModuleType:
    """The backend module called ``name`` (``fft`` or ``gemm``)."""
    if name not in BACKENDS:
        raise BackendError(
            f"Unknown spectral backend {name!r}",
            f"one of {sorted(BACKENDS) + ['auto']}",
            "pass backend='auto' to let opflow choose",
        )
    return BACKENDS[name]


def select_backend(
    name: str, spatial: tuple[int, ...], n_modes: tuple[int, ...], device: torch.device
) -> ModuleType:
    """Resolve ``name`` (possibly ``"auto"``) to a backend for one input shape.

    The ``auto`` rule, from ``benchmarks/spectral_conv.py`` on a 2-core CPU (see
    ``benchmarks/RESULTS.md``): the GEMM path costs about ``2 * kept / n`` of a dense matrix
    product per axis, the FFT path about ``5 log2(n)`` flops per point; the GEMM path wins
    whenever the kept fraction of the last axis is at most one half, which covers every
    practical FNO (modes well below the grid's Nyquist limit). Only when nearly all modes are
    kept on a large grid does the FFT reference win, and there ``auto`` uses it.
    """
    if name != "auto":
        return get_backend(name)
    kept_fraction = (n_modes[-1] // 2 + 1) / (spatial[-1] // 2 + 1)
    if kept_fraction <= 0.5 or math.prod(spatial) <= 64**2:
        return gemm
    return fft
