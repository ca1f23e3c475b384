"""The sphere in the spectral core: grids with quadrature, the spherical harmonic transform,
and the spherical convolution. Knows nothing of models, data or training."""

from opflow.spectral.sphere.conv import SphericalConv
from opflow.spectral.sphere.grid import GRID_KINDS, SphereGrid
from opflow.spectral.sphere.transform import analyze, isht, sht, sphere_resample, synthesize

__all__ = [
    "GRID_KINDS",
    "SphereGrid",
    "SphericalConv",
    "analyze",
    "isht",
    "sht",
    "sphere_resample",
    "synthesize",
]
