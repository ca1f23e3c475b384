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

    The ``auto`` rule comes from ``python benchmarks/spectral_conv.py --auto-sweep`` (2-core
    CPU, fwd+bwd; table in ``benchmarks/RESULTS.md``). With ``f`` the kept fraction of the last
    axis (``(M//2 + 1) / (n//2 + 1)``), ``gemm`` was faster for ``f <= 0.3`` at every grid
    size, for ``f <= 0.55`` on grids up to 128², and on grids up to 32² whatever ``f``; the
    torch.fft path won when about half or more of the modes are kept on 256² grids and when
    nearly all are kept on grids of 64² and up. Practical FNOs keep ``f`` well below 0.3.
    """
    if name != "auto":
        return get_backend(name)
    points = math.prod(spatial)
    kept_fraction = (n_modes[-1] // 2 + 1) / (spatial[-1] // 2 + 1)
    if kept_fraction <= 0.3 or points <= 32**2:
        return gemm
    if kept_fraction <= 0.55 and points <= 128**2:
        return gemm
    return fft
