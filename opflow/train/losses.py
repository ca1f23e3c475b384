"""Training losses on ``(B, C, *spatial)`` tensors: relative Lp and relative H1, averaged over
the batch (the norms themselves: :mod:`opflow.norms`), and WeatherBench's latitude-weighted
MSE of normalised fields."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from opflow.errors import ConfigError
from opflow.norms import (
    cell_area_weights,
    per_variable,
    relative_h1_per_sample,
    relative_lp_per_sample,
)

if TYPE_CHECKING:
    from opflow.data.dataset import FieldData
    from opflow.data.normalizer import Normalizer
    from opflow.run.spec import Task
    from opflow.train.config import Config

__all__ = ["relative_lp", "relative_h1", "lat_weighted_mse", "make_loss", "training_loss"]


def relative_lp(
    pred: torch.Tensor, target: torch.Tensor, p: int = 2, field_sum=None
) -> torch.Tensor:
    """Mean over the batch of ``||pred - target||_p / ||target||_p`` (per sample, all channels;
    ``field_sum``: see :func:`opflow.norms.relative_lp_per_sample`)."""
    return relative_lp_per_sample(pred, target, p, field_sum).mean()


def relative_h1(pred: torch.Tensor, target: torch.Tensor, periodic: bool = True) -> torch.Tensor:
    """Mean over the batch of the relative error in the H1 norm."""
    return relative_h1_per_sample(pred, target, periodic).mean()


def lat_weighted_mse(
    pred: torch.Tensor, target: torch.Tensor, area: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    r"""WeatherBench 2's (and GraphCast's) training loss on ``(B, C, lat, lon)`` fields:

    .. math:: \frac{1}{B\,C\,N} \sum_{b,c,i,j} w_i \left(\frac{p_{bcij} - y_{bcij}}{s_c}\right)^2

    with ``area`` ``w`` the ``(lat,)`` cell areas of mean 1 (:func:`opflow.norms.cell_area_weights`)
    and ``scale`` ``s`` the ``(C,)`` standard deviation of each channel's variable, so every
    variable weighs alike whatever its units, and a polar row as little as its area.
    """
    error = (pred - target) / scale.view(1, -1, 1, 1)
    return (error.square() * area.view(1, 1, -1, 1)).mean()


def make_loss(
    kind: str,
    p: int = 2,
    periodic: bool = True,
    field_sum=None,
    n_variables: int = 1,
    latitudes: np.ndarray | None = None,
    scale: torch.Tensor | None = None,
):
    """The loss ``kind`` (``relative_lp``, ``h1``, ``lat_weighted_mse``) as
    ``loss(pred, target)``; relative errors are taken per variable and averaged
    (:func:`opflow.norms.per_variable`). ``field_sum`` for fields split across processes (Lp
    only: the others need whole fields). ``lat_weighted_mse`` needs the grid's ``latitudes``
    (degrees) and each output channel's ``scale``.
    """
    if kind != "relative_lp" and field_sum is not None:
        raise ConfigError(
            f"loss.kind: {kind} with training.spatial_parallel > 1",
            "loss.kind: relative_lp when fields are split across processes",
            "use the relative Lp loss, or training.spatial_parallel: 1",
        )
    if kind == "lat_weighted_mse":
        area = torch.as_tensor(cell_area_weights(latitudes))
        return lambda pred, target: lat_weighted_mse(
            pred, target, area.to(pred.device, pred.dtype), scale.to(pred.device, pred.dtype)
        )
    if kind == "h1":
        return per_variable(lambda pred, target: relative_h1(pred, target, periodic), n_variables)
    return per_variable(lambda pred, target: relative_lp(pred, target, p, field_sum), n_variables)


def training_loss(config: Config, data: FieldData, task: Task, normalizer: Normalizer, field_sum):
    """The config's training loss for these data (latitudes) and variables (their scales)."""
    kind, latitudes, scale = config.loss.kind, None, None
    if kind == "lat_weighted_mse":
        if data.grid.dims[0] not in ("lat", "latitude"):
            raise ConfigError(
                f"loss.kind: lat_weighted_mse on fields with dims {data.grid.dims}",
                "fields on (lat, lon): the loss weighs each row by its cells' area",
                "use data.reader: weather or data.spatial_dims: [lat, lon], or another loss",
            )
        latitudes = data.coords()[data.grid.dims[0]]
        # one scale per output channel: every predicted step, rolled out or not
        stds = [normalizer.std[v] for v in task.output_variables for _ in range(task.t_out)]
        scale = torch.tensor(stds)
    return make_loss(
        kind,
        config.loss.p,
        config.data.periodic,
        field_sum,
        len(task.output_variables),
        latitudes,
        scale,
    )
