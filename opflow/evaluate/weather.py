r"""WeatherBench 2 headline scores on ``(..., lat, lon)`` fields: latitude-weighted RMSE and ACC.

Weights are the cells' areas, as WeatherBench 2 computes them: each latitude row owns the band
between the midpoints to its neighbours (the poles bound the first and last rows), with area
:math:`\propto |\sin\phi_{\rm upper} - \sin\phi_{\rm lower}|`, normalised to mean 1. Then, over
the grid of each remaining index (time, lead time, sample, …),

.. math::

    \mathrm{RMSE} = \sqrt{\overline{w\,(f - o)^2}}, \qquad
    \mathrm{ACC} = \frac{\overline{w\,f'o'}}{\sqrt{\overline{w\,f'^2}\;\overline{w\,o'^2}}},
    \quad f' = f - c,\ o' = o - c,

with :math:`\overline{\cdot}` the mean over ``lat`` and ``lon`` and ``c`` the climatology passed
in (same grid, broadcast against the fields). Average the per-time scores as the study needs
(WeatherBench 2 averages MSE over time before the square root).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from opflow.errors import ShapeError
from opflow.norms import cell_area_weights as cell_areas

__all__ = ["cell_area_weights", "lat_weighted_rmse", "anomaly_correlation"]


def cell_area_weights(lat_deg: np.ndarray | xr.DataArray) -> xr.DataArray:
    """Area of each latitude row's cells, normalised to mean 1, as a ``lat`` DataArray
    (:func:`opflow.norms.cell_area_weights`)."""
    lat = np.asarray(lat_deg, dtype=np.float64)
    return xr.DataArray(cell_areas(lat), dims="lat", coords={"lat": lat}, name="cell_area")


def _check(*fields: xr.DataArray) -> None:
    for field in fields:
        if "lat" not in field.dims or "lon" not in field.dims:
            raise ShapeError(
                f"A weather score got a field with dims {field.dims}",
                "DataArrays with 'lat' and 'lon' dims (opflow.data.weather layout)",
                "open the data with opflow.data.weather.open_weather",
            )


def lat_weighted_rmse(forecast: xr.DataArray, truth: xr.DataArray) -> xr.DataArray:
    """Latitude-weighted RMSE over ``(lat, lon)`` per remaining index."""
    _check(forecast, truth)
    weights = cell_area_weights(truth["lat"].values).assign_coords(lat=truth["lat"])
    mse = ((forecast - truth) ** 2 * weights).mean(("lat", "lon"))
    return np.sqrt(mse).rename("rmse")


def anomaly_correlation(
    forecast: xr.DataArray, truth: xr.DataArray, climatology: xr.DataArray
) -> xr.DataArray:
    """Latitude-weighted anomaly correlation coefficient over ``(lat, lon)`` per index."""
    _check(forecast, truth, climatology)
    weights = cell_area_weights(truth["lat"].values).assign_coords(lat=truth["lat"])
    f, o = forecast - climatology, truth - climatology
    num = (weights * f * o).mean(("lat", "lon"))
    den = np.sqrt((weights * f**2).mean(("lat", "lon")) * (weights * o**2).mean(("lat", "lon")))
    return (num / den).rename("acc")
