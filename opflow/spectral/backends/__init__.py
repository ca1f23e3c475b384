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

__all__ = [
    "BACKENDS",
    "TRITON_MAX_POINTS",
    "get_backend",
    "select_backend",
    "truncated_dft_pays",
]

BACKENDS: dict[str, ModuleType | None] = {"fft": fft, "gemm": gemm, "triton": None}
# the triton kernels' phases are exact int32 products n * k, so an axis has fewer points
TRITON_MAX_POINTS = 46341


def triton_available() -> bool:
    """Whether Triton is installed (the ``triton`` backend can be imported)."""
    return importlib.util.find_spec("triton") is not None


def truncated_dft_pays(kept_fraction: float, points: int) -> bool:
    """Whether the truncated-DFT GEMMs (``gemm``) beat ``torch.fft`` on the CPU, for a
    transform that keeps ``kept_fraction`` of its last (real-FFT, or longitude) axis's
    wavenumbers on a grid of ``points`` points: the one rule of the plane and the sphere.

    Measured fwd+bwd on the 2-core CPU (tables in ``benchmarks/RESULTS.md``): on the plane
    (``benchmarks/spectral_conv.py --auto-sweep``) ``gemm`` was faster for fractions up to
    0.55 at every grid from 32² to 256², and on grids up to 32² whatever the fraction; on the
    sphere (``benchmarks/sht.py --auto-sweep``, SphericalConv) up to 0.4 everywhere and even
    at 0.5 (1.0-1.4x), where triangular truncation caps the fraction.
    """
    return kept_fraction <= 0.55 or points <= 32**2


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

    ``auto`` on the CPU: ``gemm`` where :func:`truncated_dft_pays`, else ``fft``.

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
    kept_fraction = (n_modes[-1] // 2 + 1) / (spatial[-1] // 2 + 1)
    return gemm if truncated_dft_pays(kept_fraction, math.prod(spatial)) else fft
