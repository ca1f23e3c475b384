"""Training losses on ``(B, C, *spatial)`` tensors: relative Lp and relative H1, averaged over
the batch (the norms themselves: :mod:`opflow.norms`)."""

from __future__ import annotations

import torch

from opflow.norms import relative_h1_per_sample, relative_lp_per_sample

__all__ = ["relative_lp", "relative_h1", "make_loss"]


def relative_lp(pred: torch.Tensor, target: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Mean over the batch of ``||pred - target||_p / ||target||_p`` (per sample, all channels)."""
    return relative_lp_per_sample(pred, target, p).mean()


def relative_h1(pred: torch.Tensor, target: torch.Tensor, periodic: bool = True) -> torch.Tensor:
    """Mean over the batch of the relative error in the H1 norm."""
    return relative_h1_per_sample(pred, target, periodic).mean()


def make_loss(kind: str, p: int = 2, periodic: bool = True):
    if kind == "h1":
        return lambda pred, target: relative_h1(pred, target, periodic)
    return lambda pred, target: relative_lp(pred, target, p)
