"""Padding: of the domain (so a Fourier layer can treat a non-periodic problem), and by the
boundary condition (so local stencils see the right neighbours at the edges); the grid spacing
each boundary condition implies."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from opflow.errors import ConfigError

__all__ = [
    "Boundary",
    "CONV_PADDING_MODE",
    "DomainPadding",
    "check_boundary",
    "grid_spacing",
    "pad_boundary",
]

Boundary = Literal["zero", "periodic", "reflect"]
# the same conditions as nn.Conv's padding_mode, and as F.pad's mode
CONV_PADDING_MODE = {"zero": "zeros", "periodic": "circular", "reflect": "reflect"}
_PAD_MODE = {"zero": "constant", "periodic": "circular", "reflect": "reflect"}


def check_boundary(boundary: str) -> None:
    """Raise :class:`ConfigError` unless ``boundary`` is a known boundary condition."""
    if boundary not in _PAD_MODE:
        raise ConfigError(
            f"boundary={boundary!r}",
            f"one of {sorted(_PAD_MODE)}",
            "zero for Dirichlet data (Darcy), periodic for periodic data (Navier–Stokes)",
        )


def pad_boundary(x: torch.Tensor, width: int | Sequence[int], boundary: Boundary) -> torch.Tensor:
    """Pad the spatial axes of ``(B, C, *s)`` by ``width`` points per side (one int for every
    axis, or one per axis): zeros (Dirichlet), the periodic continuation, or the mirror image
    (``reflect``)."""
    n_dim = x.ndim - 2
    widths = [width] * n_dim if isinstance(width, int) else list(width)
    return F.pad(x, [w for w in reversed(widths) for _ in (0, 1)], mode=_PAD_MODE[boundary])


class DomainPadding:
    """Pad each spatial axis by ``round(fraction * n)`` zeros on both sides, and undo it.

    Stateless: the padding is recomputed from each tensor's shape, so padding at one resolution
    and unpadding at another (super-resolution output) both work.
    """

    def __init__(self, fraction: float | Sequence[float], n_dim: int):
        self.fractions = (
            [float(fraction)] * n_dim
            if isinstance(fraction, int | float)
            else [float(f) for f in fraction]
        )

    def widths(self, spatial: Sequence[int]) -> list[int]:
        return [round(f * n) for f, n in zip(self.fractions, spatial)]

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        widths = self.widths(x.shape[2:])
        return F.pad(x, [p for w in reversed(widths) for p in (w, w)])

    def padded_shape(self, spatial: Sequence[int]) -> tuple[int, ...]:
        return tuple(n + 2 * w for n, w in zip(spatial, self.widths(spatial)))

    def unpad(self, x: torch.Tensor, spatial: Sequence[int]) -> torch.Tensor:
        """Crop ``x`` (padded for a domain of ``spatial`` points) back to ``spatial``."""
        index = [slice(None), slice(None)]
        index += [slice(w, w + n) for w, n in zip(self.widths(spatial), spatial)]
        return x[tuple(index)]


def grid_spacing(
    shape: Sequence[int], boundary: Boundary, domain_length: float | Sequence[float] = 1.0
) -> list[float]:
    """Spacing per axis of a uniform grid of ``shape`` points over ``domain_length``."""
    lengths = (
        [float(domain_length)] * len(shape)
        if isinstance(domain_length, int | float)
        else [float(v) for v in domain_length]
    )
    if boundary == "periodic":
        return [length / n for length, n in zip(lengths, shape)]
    return [length / max(n - 1, 1) for length, n in zip(lengths, shape)]
