"""Weather data (ERA5 / WeatherBench 2 conventions) as fields on a sphere grid.

Such files differ in small ways that matter to a spherical model: the latitude axis is called
``latitude`` or ``lat`` and runs north-to-south or south-to-north, longitudes come in any
window (0..360, -180..180, 20..380, with or without a repeated wrap-around column), dims come in
any order, pressure-level variables carry a level axis (``level``, ``lev``, ``plev``,
``pressure_level``, ``isobaricInhPa``; in hPa or Pa, levels are asked for in hPa), and the
latitudes are equiangular with or without the poles, or Gaussian. :func:`open_weather` reads
any of these into one layout,

    dims ``(..., lat, lon)``: rows north to south, longitudes ascending from the smallest,

with the variables selected (``"geopotential@500"`` is geopotential at level 500), and attaches
the :class:`opflow.spectral.sphere.SphereGrid` inferred from the latitudes (:func:`infer_grid`)
as ``ds.attrs["sphere_grid"]``. Files are opened read-only; a grid that no spherical basis fits,
a missing variable or level, or NaNs in the data raise :class:`opflow.errors.DataError`.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from opflow.data.io import open_dataset, resolve_path
from opflow.errors import DataError, ResolutionError
from opflow.spectral.sphere import SphereGrid

__all__ = ["open_weather", "infer_grid", "to_sphere_layout"]

_LAT_NAMES = ("latitude", "lat")
_LON_NAMES = ("longitude", "lon")
_LEVEL_NAMES = ("level", "pressure_level", "plev", "lev", "isobaricInhPa")
# Gaussian latitudes are stored rounded (ERA5's GRIB/netCDF: ~1e-6 degrees, some tools 1e-3)
_GAUSSIAN_TOLERANCE_DEG = 2e-3


def _find_dim(ds: xr.Dataset, names: tuple[str, ...], what: str, path: str) -> str:
    for name in names:
        if name in ds.dims:
            return name
    raise DataError(
        f"{path} has no {what} dimension (dims: {list(ds.dims)})",
        f"a dimension named one of {list(names)}",
        f"rename the {what} dimension of the file",
    )


def infer_grid(latitudes_deg: np.ndarray, nlon: int) -> SphereGrid:
    """The sphere grid whose latitudes (degrees, north to south) are ``latitudes_deg``.

    Recognises equiangular grids with poles (spacing ``180/(n-1)``), without poles (spacing
    ``180/n``, offset by half a step) and Gaussian grids; anything else is a DataError.
    """
    lat = np.asarray(latitudes_deg, dtype=np.float64)
    n = lat.size
    if n < 2:
        raise DataError(
            f"A latitude axis of {n} point(s) cannot carry a spherical basis",
            "at least 2 latitudes",
            "use a global field",
        )
    candidates = []
    for kind in ("equiangular", "equiangular-no-poles", "legendre-gauss"):
        try:
            expected = SphereGrid(n, max(nlon, 2), kind).latitudes_deg.numpy()
        except ResolutionError:
            continue
        tolerance = _GAUSSIAN_TOLERANCE_DEG if kind == "legendre-gauss" else 1e-6 * 180 / n
        if np.allclose(lat, expected, rtol=0.0, atol=tolerance):
            candidates.append(kind)
    if not candidates:
        step = np.diff(lat)
        raise DataError(
            f"The {n} latitudes ({lat[0]:.4g} .. {lat[-1]:.4g}, steps {step.min():.4g} .. "
            f"{step.max():.4g} degrees) match no spherical grid",
            "global latitudes: equiangular with poles (step 180/(n-1)), without poles (step "
            "180/n, first at 90 - 90/n) or Gaussian",
            "regrid the data to a global equiangular or Gaussian grid first",
        )
    return SphereGrid(n, nlon, candidates[0])


def _check_longitudes(lon: np.ndarray, path: str) -> None:
    n = lon.size
    step = np.diff(lon)
    if n < 2 or not np.allclose(step, 360.0 / n, rtol=0.0, atol=1e-6 * 360.0 / n):
        raise DataError(
            f"The {n} longitudes of {path} are not a full uniform circle "
            f"(steps {step.min() if n > 1 else 0:.4g} .. {step.max() if n > 1 else 0:.4g})",
            f"{n} ascending longitudes 360/{n} degrees apart",
            "use global data on a regular longitude grid",
        )


def _one_turn_of_longitudes(ds: xr.Dataset) -> xr.Dataset:
    """Longitudes in any window (0..360, -180..180, 20..380) as one turn starting at the
    smallest of them modulo 360, ascending; a wrap-around column that repeats the first
    (0 and 360) is dropped."""
    lon = ds["lon"].values.astype(np.float64)
    wrapped = np.mod(lon - lon.min(), 360.0) + lon.min()
    repeats = np.isclose(np.mod(lon - lon[0], 360.0), 0.0, atol=1e-9) & (np.arange(lon.size) > 0)
    ds = ds.isel(lon=np.flatnonzero(~repeats))
    return ds.assign_coords(lon=("lon", wrapped[~repeats], ds["lon"].attrs))


def to_sphere_layout(ds: xr.Dataset, path: str = "the dataset") -> xr.Dataset:
    """Rename the horizontal dims to ``lat``/``lon``, order rows north to south, put
    ``(lat, lon)`` last, and attach the inferred grid kind (``attrs['sphere_grid']``)."""
    lat_dim = _find_dim(ds, _LAT_NAMES, "latitude", path)
    lon_dim = _find_dim(ds, _LON_NAMES, "longitude", path)
    ds = ds.rename({lat_dim: "lat", lon_dim: "lon"})
    ds = _one_turn_of_longitudes(ds)
    ds = ds.sortby("lat", ascending=False).sortby("lon")
    _check_longitudes(ds["lon"].values, path)
    grid = infer_grid(ds["lat"].values, ds.sizes["lon"])
    ds = ds.transpose(..., "lat", "lon")
    ds["lat"].attrs.update(units="degrees_north", standard_name="latitude")
    ds["lon"].attrs.update(units="degrees_east", standard_name="longitude")
    return ds.assign_attrs(sphere_grid=grid.kind)


def _select(ds: xr.Dataset, spec: str, path: str) -> xr.DataArray:
    name, _, level = spec.partition("@")
    if name not in ds.data_vars:
        raise DataError(
            f"{path} has no variable {name!r}",
            f"one of {sorted(ds.data_vars)}",
            "fix the variable name (a level is selected as 'name@level')",
        )
    da = ds[name]
    level_dims = [d for d in _LEVEL_NAMES if d in da.dims]
    if not level:
        if level_dims:
            raise DataError(
                f"{name!r} in {path} has levels {ds[level_dims[0]].values.tolist()}",
                "a level for a pressure-level variable",
                f"ask for '{name}@<level>', e.g. '{name}@{ds[level_dims[0]].values[0]}'",
            )
        return da
    if not level_dims:
        raise DataError(
            f"{name!r} in {path} has no level axis, but level {level} was asked for",
            f"a variable with one of the dims {list(_LEVEL_NAMES)}",
            f"ask for '{name}' without '@{level}'",
        )
    dim = level_dims[0]
    available = ds[dim].values
    # levels are asked for in hPa; a level axis in Pa (CMIP's plev) is converted
    in_pa = ds[dim].attrs.get("units", "").strip().lower() == "pa"
    match = np.isclose(available.astype(np.float64) / (100.0 if in_pa else 1.0), float(level))
    if not match.any():
        raise DataError(
            f"{path} has no level {level} for {name!r}",
            f"one of the levels {available.tolist()}" + (" Pa (asked in hPa)" if in_pa else ""),
            "pick an available level",
        )
    return da.isel({dim: int(np.argmax(match))}, drop=True).rename(spec.replace("@", "_"))


def _open_files(path) -> tuple[xr.Dataset, str]:
    """One dataset from a path, a list of paths or a glob pattern (combined by coordinates)."""
    path = resolve_path(path)
    if isinstance(path, str) and "://" in path:  # a remote store (its URL may hold a '?')
        return open_dataset(path), path
    if isinstance(path, str | Path) and any(c in str(path) for c in "*?["):
        paths = sorted(glob.glob(str(path)))
        if not paths:
            raise DataError(
                f"No file matches {path}", "at least one file", "check the pattern and folder"
            )
    elif isinstance(path, str | Path):
        return open_dataset(path), str(path)
    else:
        paths = list(path)
    parts = [open_dataset(p, chunks={}) for p in paths]
    try:
        return xr.combine_by_coords(
            parts, combine_attrs="drop_conflicts"
        ), f"{paths[0]} (+{len(paths) - 1})"
    except ValueError as err:
        raise DataError(
            f"The {len(paths)} files {paths[0]} ... cannot be combined: {err}",
            "files that tile one dataset along their coordinates (e.g. time)",
            "open them separately",
        ) from None


def _rename_dims(ds: xr.Dataset, dims: dict[str, str], path: str) -> xr.Dataset:
    unknown = sorted(set(dims) - {"lat", "lon", "time", "level"})
    missing = sorted(name for name in dims.values() if name not in ds.dims)
    if unknown or missing:
        raise DataError(
            f"dims={dims} for {path}: "
            + (f"unknown keys {unknown}" if unknown else "")
            + (f"no dims {missing} in the file (it has {list(ds.dims)})" if missing else ""),
            "keys among lat, lon, time, level mapped to dims of the file",
            "fix the mapping",
        )
    return ds.rename({file_name: ours for ours, file_name in dims.items()})


def open_weather(
    path: str | Path | Sequence[str | Path],
    variables: list[str] | str | None = None,
    dims: dict[str, str] | None = None,
) -> xr.Dataset:
    """Open an ERA5/WeatherBench-style file (zarr, netCDF) in opflow's sphere layout.

    ``path``: a file or store, a list of them, or a glob pattern (``"era5_*.nc"``): several
    are combined by their coordinates (e.g. one file per month), lazily; or the URL of a remote
    zarr store (``https://``, ``gs://``, ``s3://``).
    ``variables``: a name or a list of names, ``"name@level"`` for one pressure level (stored
    as ``name_level``); all single-level variables by default. ``dims``: the file's names for
    ``lat``, ``lon``, ``time`` or ``level`` where they are not the usual ones, e.g.
    ``{"lat": "y_deg", "lon": "x_deg"}``. The result is lazy; its values are checked for
    NaN/Inf when loaded here (a DataError names the variable and the count).
    """
    if isinstance(variables, str):  # one name, not its letters
        variables = [variables]
    raw, path = _open_files(path)
    raw = _rename_dims(raw, dims or {}, path)
    if variables is None:
        variables = [v for v in raw.data_vars if not any(d in raw[v].dims for d in _LEVEL_NAMES)]
    ds = xr.Dataset({s.replace("@", "_"): _select(raw, s, str(path)) for s in variables})
    ds = to_sphere_layout(ds.assign_attrs(raw.attrs), str(path))
    for name, da in ds.data_vars.items():
        bad = int((~np.isfinite(da)).sum())
        if bad:
            raise DataError(
                f"{name!r} in {path} has {bad} NaN/Inf value(s)",
                "finite values everywhere (a spherical transform has no mask)",
                "fill the missing values (e.g. ds.ffill / interpolate_na) before use",
            )
    return ds
