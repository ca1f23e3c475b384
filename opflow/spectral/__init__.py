"""The spectral core: per-axis truncated bases, transforms and the spectral convolution.

Knows nothing of models, data or training.
"""

from opflow.spectral.backends import BACKENDS, get_backend, select_backend
from opflow.spectral.conv import (
    SpectralConv,
    cosine_resample,
    even_extension,
    fourier_resample,
    mix_modes,
)
from opflow.spectral.fourier import check_grid, kept_frequencies, min_grid_points
from opflow.spectral.multiplier import SplitBasis, fourier_multiply

__all__ = [
    "BACKENDS",
    "SpectralConv",
    "SplitBasis",
    "check_grid",
    "cosine_resample",
    "even_extension",
    "fourier_multiply",
    "fourier_resample",
    "get_backend",
    "kept_frequencies",
    "min_grid_points",
    "mix_modes",
    "select_backend",
]
