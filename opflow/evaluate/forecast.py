"""A weather forecast's scores against the baselines it must beat.

Per output variable and lead step, over the test pairs: WeatherBench 2's latitude-weighted RMSE
and anomaly correlation (:mod:`opflow.evaluate.weather`) of the model, of **persistence** (the
last input state held) and of **climatology** (a climatology file's fields, or else the
per-point mean of the training split — on a short series that is a mean over days, not a
30-year climatology, and the table says which).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from opflow.data.dataset import FieldData
from opflow.data.io import open_dataset
from opflow.evaluate.weather import anomaly_correlation, lat_weighted_rmse

__all__ = ["forecast_scores", "forecast_table"]


def forecast_scores(pred, truth, last, data: FieldData, task, climatology) -> dict:
    """Latitude-weighted RMSE and ACC per output variable and lead step, averaged over the test
    pairs, beside the two baselines every forecast must beat: persistence (``last``, the
    inputs' last state ``(N, n_inputs, *s)``, for variables that are inputs) and climatology
    (the climatology file's fields, or else the per-point mean of the training split)."""
    lat_dim, lon_dim = data.grid.dims
    coords = data.coords()
    grid = {"lat": coords[lat_dim], "lon": coords[lon_dim]}
    n_steps = pred.shape[1] // len(task.output_variables)
    if climatology is not None:
        clim = open_dataset(climatology).rename({lat_dim: "lat", lon_dim: "lon"})
        clim = {v: clim[v].interp(lat=grid["lat"], lon=grid["lon"]) for v in task.output_variables}
        source = str(climatology)
    else:
        clim = {}
        for var in task.output_variables:
            train = data.split_values(var, "train")
            mean = train.mean([d for d in train.dims if d not in (lat_dim, lon_dim)])
            values = np.asarray(mean.transpose(lat_dim, lon_dim).values, np.float64)
            clim[var] = xr.DataArray(values, dims=("lat", "lon"), coords=grid)
        source = "mean of the training split"
    dims = ("pair", "step", "lat", "lon")
    scores = {}
    for i, var in enumerate(task.output_variables):
        block = slice(i * n_steps, (i + 1) * n_steps)
        p = xr.DataArray(pred[:, block].double().numpy(), dims=dims, coords=grid)
        t = xr.DataArray(truth[:, block].double().numpy(), dims=dims, coords=grid)
        c = clim[var]
        s = {
            "rmse": _mean_rmse(p, t),
            "acc": anomaly_correlation(p, t, c).mean("pair").values.tolist(),
            "climatology_rmse": _mean_rmse(c.broadcast_like(t), t),
            "climatology_source": source,
        }
        if var in task.input_variables:
            state = last[:, task.input_variables.index(var)].double().numpy()
            persistence = t.copy(data=np.broadcast_to(state[:, None], t.shape))
            s["persistence_rmse"] = _mean_rmse(persistence, t)
            s["persistence_acc"] = (
                anomaly_correlation(persistence, t, c).mean("pair").values.tolist()
            )
        scores[var] = s
    return scores


def _mean_rmse(forecast: xr.DataArray, truth: xr.DataArray) -> list[float]:
    """Per lead step: the square root of the pairs' mean latitude-weighted MSE (WeatherBench 2
    averages the squared error over forecast times before the root)."""
    return np.sqrt((lat_weighted_rmse(forecast, truth) ** 2).mean("pair")).values.tolist()


def forecast_table(scores: dict, grid: list[int]) -> list[str]:
    """Lines of a table of :func:`forecast_scores`: per variable and lead step, the model's
    lat-weighted RMSE and ACC beside persistence's and climatology's."""
    lines = [
        "",
        f"  {'x'.join(map(str, grid))}: lat-weighted RMSE and ACC per lead step "
        f"(climatology: {next(iter(scores.values()))['climatology_source']})",
        f"  {'variable':<14} {'step':>4} {'model':>10} {'persist.':>10} {'climat.':>10} "
        f"{'ACC':>7} {'ACC pers.':>9}",
    ]
    for var, s in scores.items():
        for k, rmse in enumerate(s["rmse"]):
            persistence = s.get("persistence_rmse", [float("nan")] * len(s["rmse"]))[k]
            persistence_acc = s.get("persistence_acc", [float("nan")] * len(s["rmse"]))[k]
            mark = " *" if rmse < min(persistence, s["climatology_rmse"][k]) else ""
            lines.append(
                f"  {var:<14} {k + 1:>4} {rmse:>10.4g} {persistence:>10.4g} "
                f"{s['climatology_rmse'][k]:>10.4g} {s['acc'][k]:>7.3f} {persistence_acc:>9.3f}"
                f"{mark}"
            )
    lines.append("  * the model beats both baselines")
    return lines
