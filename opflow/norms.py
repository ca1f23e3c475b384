"""Norms and relative errors of fields ``(B, C, *spatial)``: one implementation for training
losses, evaluation and the GP solver.

The H1 norm is taken on the unit domain, ``||u||²_H1 = mean(u²) + mean(|∇u|²)`` (means over
the grid points, so the value does not depend on the resolution):

* ``periodic=True``: derivatives by FFT on the unit torus (grid spacing ``1/n``), the norm being
  ``Σ_k (1 + |2πk|²) |û_k|²`` with a forward-normalised transform (Parseval);
* ``periodic=False``: second-order finite differences on the unit square with the boundary
  points included (spacing ``1/(n - 1)``; one-sided at the edges). Use it for data that is
  not periodic (``data.periodic: false``): the FFT would differentiate the periodic
  extension, whose jumps at the boundary make the norm grow with the grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

__all__ = [
    "relative_lp_per_sample",
    "relative_h1_per_sample",
    "h1_norm_squared",
    "per_variable",
    "cell_area_weights",
]


def relative_lp_per_sample(
    pred: torch.Tensor,
    target: torch.Tensor,
    p: int = 2,
    field_sum: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """``||pred - target||_p / ||target||_p`` per sample over all channels and points, ``(B,)``.

    ``field_sum``: where each process holds some rows of the fields (domain parallelism), the
    sum over the processes of the per-sample sums of ``|.|^p`` (``ProcessGroup.field_sum``).
    """
    if field_sum is None:
        diff = (pred - target).flatten(1).norm(p=p, dim=1)
        return diff / target.flatten(1).norm(p=p, dim=1).clamp_min(1e-12)
    diff = field_sum((pred - target).abs().pow(p).flatten(1).sum(dim=1))
    norm = field_sum(target.abs().pow(p).flatten(1).sum(dim=1))
    return (diff / norm.clamp_min(1e-12**p)).pow(1 / p)


def h1_norm_squared(x: torch.Tensor, periodic: bool = True) -> torch.Tensor:
    """Squared H1 norm per sample on the unit domain (see the module docstring), ``(B,)``."""
    dims = tuple(range(2, x.ndim))
    if not periodic:  # sum over channels of the mean over points, as the FFT branch gives
        total = x.square().flatten(2).mean(dim=2).sum(dim=1)
        for dim in dims:
            (derivative,) = torch.gradient(
                x, spacing=1.0 / (x.shape[dim] - 1), dim=dim, edge_order=2
            )
            total = total + derivative.square().flatten(2).mean(dim=2).sum(dim=1)
        return total
    spec = torch.fft.fftn(x, dim=dims, norm="forward")
    k2 = torch.zeros(x.shape[2:], device=x.device, dtype=x.dtype)
    for axis, n in enumerate(x.shape[2:]):
        k = torch.fft.fftfreq(n, d=1.0 / n, device=x.device, dtype=x.dtype) * 2 * math.pi
        shape = [1] * len(dims)
        shape[axis] = n
        k2 = k2 + k.view(shape) ** 2
    return ((1 + k2) * spec.abs() ** 2).flatten(1).sum(dim=1)


def relative_h1_per_sample(
    pred: torch.Tensor, target: torch.Tensor, periodic: bool = True
) -> torch.Tensor:
    """``||pred - target||_H1 / ||target||_H1`` per sample, ``(B,)``."""
    error = h1_norm_squared(pred - target, periodic)
    return (error / h1_norm_squared(target, periodic).clamp_min(1e-24)).sqrt()


def per_variable(metric, n_variables: int):
    """``metric(pred, target)`` on each variable's block of channels (variable-major, as the
    data layer stacks them), averaged over the variables.

    Relative errors pooled over variables are ruled by the one with the largest values: on
    shallow water a 10 km mean depth drowns vorticity of 1e-5 / s, and a model trained on the
    pooled loss learnt persistence (loss 0.0031 from the first epoch on). One variable: the
    metric itself.
    """
    if n_variables == 1:
        return metric

    def averaged(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pairs = zip(pred.chunk(n_variables, dim=1), target.chunk(n_variables, dim=1))
        return sum(metric(p, t) for p, t in pairs) / n_variables

    return averaged


def cell_area_weights(lat_deg) -> np.ndarray:
    r"""Area of each latitude row's cells, normalised to mean 1 (WeatherBench 2's weights).

    Each row owns the band between the midpoints to its neighbours, the poles bounding the
    first and last rows: area :math:`\propto |\sin\phi_{upper} - \sin\phi_{lower}|`.
    ``lat_deg``: ``(nlat,)`` latitudes in degrees, any order; returns ``(nlat,)`` float64.
    """
    lat = np.asarray(lat_deg, dtype=np.float64)
    order = np.argsort(lat)
    ascending = lat[order]
    mids = (ascending[1:] + ascending[:-1]) / 2
    bounds = np.deg2rad(np.concatenate(([-90.0], mids, [90.0])))
    area = np.empty_like(lat)
    area[order] = np.abs(np.sin(bounds[1:]) - np.sin(bounds[:-1]))
    return area / area.mean()
