"""Backends of the spectral core, chosen at one dispatch point (:func:`select_backend`).

Every backend implements the same two maps on the canonical spectral layout
``(M_total, B, 2*C)`` and is tested against ``fft``:

* ``analyze(x, n_modes) -> spec``
* ``synthesize(spec, n_modes, channels, output_shape) -> field``

A backend may also provide ``spectral_conv(x, weight, bias, n_modes, output_shape)``, a fast
path of the whole layer in its own layout: ``gemm`` as one autograd node with a hand-written
backward, ``triton`` to keep the spectrum in its planes.
The ``triton`` backend is imported on first use: it needs Triton, and its kernels bind to the
interpreter or the GPU when they are defined.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
from types import ModuleType

import torch

from opflow.errors import BackendError
from opflow.spectral.backends import fft, gemm

__all__ = ["BACKENDS", "TRITON_MAX_POINTS", "get_backend", "select_backend"]

BACKENDS: dict[str, ModuleType | None] = {"fft": fft, "gemm": gemm, "triton": None}
# the triton kernels' phases are exact int32 products n * k, so an axis has fewer points
TRITON_MAX_POINTS = 46341


def triton_available() -> bool:
    """Whether Triton is installed (the ``triton`` backend can be imported)."""
    return importlib.util.find_spec("triton") is not None


def get_backend(name: str) -> ModuleType:
    """The backend module called ``name`` (``fft``, ``gemm`` or ``triton``)."""
    if name not in BACKENDS:
        raise BackendError(
            f"Unknown spectral backend {name!r}",
            f"one of {sorted(BACKENDS) + ['auto']}",
            "pass backend='auto' to let opflow choose",
        )
    if BACKENDS[name] is None:
        if not triton_available():
            raise BackendError(
                "backend='triton' needs Triton, which is not installed",
                "the triton package (it comes with torch's CUDA builds)",
                "pip install triton, or use backend='auto'",
            )
        BACKENDS[name] = importlib.import_module("opflow.spectral.backends.triton")
    return BACKENDS[name]


def select_backend(
    name: str, spatial: tuple[int, ...], n_modes: tuple[int, ...], device: torch.device
) -> ModuleType:
    """Resolve ``name`` (possibly ``"auto"``) to a backend for one input shape.

    The ``auto`` rule comes from ``python benchmarks/spectral_conv.py --auto-sweep`` (2-core
    CPU, fwd+bwd; table in ``benchmarks/RESULTS.md``). With ``f`` the kept fraction of the last
    axis (``(M//2 + 1) / (n//2 + 1)``), ``gemm`` was faster for ``f <= 0.55`` at every grid
    size (32² to 256²), and on grids up to 32² whatever ``f``; the torch.fft path won when
    nearly all modes are kept on grids of 64² and up. Practical FNOs keep ``f`` well below 0.3.

    On CUDA devices ``auto`` picks ``triton`` where its kernels apply (Triton installed, every
    axis shorter than :data:`TRITON_MAX_POINTS`), else ``fft`` (cuFFT). ``triton`` on a CPU
    tensor is an error unless Triton's interpreter is on (``TRITON_INTERPRET=1``).
    """
    if name == "triton":
        backend = get_backend(name)
        backend.check_device(device)
        return backend
    if name != "auto":
        return get_backend(name)
    if device.type == "cuda":
        fits = max(spatial) < TRITON_MAX_POINTS
        return get_backend("triton") if fits and triton_available() else fft
    points = math.prod(spatial)
    kept_fraction = (n_modes[-1] // 2 + 1) / (spatial[-1] // 2 + 1)
    if kept_fraction <= 0.55 or points <= 32**2:
        return gemm
    return fft
