"""Training losses on ``(B, C, *spatial)`` tensors: relative Lp and relative H1, averaged over
the batch (the norms themselves: :mod:`opflow.norms`)."""

from __future__ import annotations

import torch

from opflow.errors import ConfigError
from opflow.norms import relative_h1_per_sample, relative_lp_per_sample

__all__ = ["relative_lp", "relative_h1", "make_loss"]


def relative_lp(
    pred: torch.Tensor, target: torch.Tensor, p: int = 2, field_sum=None
) -> torch.Tensor:
    """Mean over the batch of ``||pred - target||_p / ||target||_p`` (per sample, all channels;
    ``field_sum``: see :func:`opflow.norms.relative_lp_per_sample`)."""
    return relative_lp_per_sample(pred, target, p, field_sum).mean()


def relative_h1(pred: torch.Tensor, target: torch.Tensor, periodic: bool = True) -> torch.Tensor:
    """Mean over the batch of the relative error in the H1 norm."""
    return relative_h1_per_sample(pred, target, periodic).mean()


def make_loss(kind: str, p: int = 2, periodic: bool = True, field_sum=None):
    """The loss ``kind`` (``relative_lp``, ``h1``) as ``loss(pred, target)``;
    ``field_sum`` for fields split across processes (Lp only: H1's derivatives need the
    neighbouring rows)."""
    if kind == "h1":
        if field_sum is not None:
            raise ConfigError(
                "loss.kind: h1 with training.spatial_parallel > 1",
                "loss.kind: relative_lp when fields are split across processes",
                "use the relative Lp loss, or training.spatial_parallel: 1",
            )
        return lambda pred, target: relative_h1(pred, target, periodic)
    return lambda pred, target: relative_lp(pred, target, p, field_sum)
