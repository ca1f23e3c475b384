"""Zero padding of the domain, so a Fourier layer can treat a non-periodic problem."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["DomainPadding"]


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
