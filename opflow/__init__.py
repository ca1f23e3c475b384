"""opflow: resolution-invariant neural operators for PDEs on one spectral core."""

__version__ = "0.1.0"
