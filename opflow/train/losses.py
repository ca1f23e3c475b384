"""Training losses on ``(B, C, *spatial)`` tensors: relative Lp and relative H1."""

from __future__ import annotations

import math

import torch

__all__ = ["relative_lp", "relative_h1", "make_loss"]


def relative_lp(pred: torch.Tensor, target: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Mean over the batch of ``||pred - target||_p / ||target||_p`` (per sample, all channels)."""
    diff = (pred - target).flatten(1).norm(p=p, dim=1)
    ref = target.flatten(1).norm(p=p, dim=1).clamp_min(1e-12)
    return (diff / ref).mean()


def _h1_norm_sq(x: torch.Tensor) -> torch.Tensor:
    """Squared periodic H1 norm per sample: ``sum_k (1 + |2 pi k|^2) |x_hat_k|^2``."""
    dims = tuple(range(2, x.ndim))
    spec = torch.fft.fftn(x, dim=dims, norm="forward")
    k2 = torch.zeros(x.shape[2:], device=x.device, dtype=x.dtype)
    for axis, n in enumerate(x.shape[2:]):
        k = torch.fft.fftfreq(n, d=1.0 / n, device=x.device, dtype=x.dtype) * 2 * math.pi
        shape = [1] * len(dims)
        shape[axis] = n
        k2 = k2 + k.view(shape) ** 2
    return ((1 + k2) * spec.abs() ** 2).flatten(1).sum(dim=1)


def relative_h1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the relative error in the periodic H1 norm."""
    return (_h1_norm_sq(pred - target) / _h1_norm_sq(target).clamp_min(1e-24)).sqrt().mean()


def make_loss(kind: str, p: int = 2):
    if kind == "h1":
        return relative_h1
    return lambda pred, target: relative_lp(pred, target, p)
