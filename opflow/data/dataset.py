"""Fields on a grid from xarray datasets, checked and split, mapped from inputs to outputs.

A :class:`DataConfig` names the variables, the dims (any names: ``lat``/``lon`` work as well as
``y``/``x``), the time windows and the split. :class:`FieldData` opens the file, checks it
(missing variables or dims, NaN/Inf, non-uniform axes; descending coordinates are flipped),
and hands out :class:`~opflow.data.windows.WindowDataset` s of ``(input, target)`` pairs.

Two layouts:

* **samples** (``sample_dim``, e.g. trajectories from a solver): samples are split by index
  (train first, then validation, then test), so every resolution of one dataset splits the
  same way, and every time window of a sample is a pair;
* **one time series** (``sample_dim: null``, e.g. weather): the time axis is cut into
  contiguous blocks (train, then validation, then test) and a pair's window lies within one
  block, so no time step is both a training target and a test input.

``reader: weather`` opens the file with :func:`opflow.data.weather.open_weather` (ERA5 /
WeatherBench conventions: ``name@level`` variables, any latitude order or longitude window,
``dims`` naming the file's lat/lon/time/level dims) as one time series on ``lat``/``lon``,
rows north to south as the spherical models expect.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr

from opflow.data.grid import Grid, uniform_axis
from opflow.data.io import open_dataset
from opflow.data.windows import WindowDataset
from opflow.errors import ConfigError, DataError
from opflow.spectral.fourier import min_grid_points

__all__ = ["DataConfig", "FieldData", "Grid", "check_time_steps"]

_SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class DataConfig:
    """Which data to learn from, and how inputs map to targets.

    ``sample_dim: null`` reads the file as one time series (split in time blocks).
    ``static_variables``: fields without a time dim (land-sea mask, orography, a coefficient
    field) appended to every input as extra channels, never predicted.
    ``reader``: ``fields`` (any xarray file) or ``weather`` (:mod:`opflow.data.weather`; one
    time series on ``lat``/``lon``, set by it); ``dims``: for ``weather``, the file's names of
    ``lat``, ``lon``, ``time`` or ``level`` where they are not the usual ones.
    ``path``: a file, or a list of files holding the same data at several grids
    (multi-resolution training: every batch comes from one of them; the first is the training
    grid a checkpoint records, validated on). A weather dataset split over many files is one
    glob pattern (``"era5_*.nc"``).
    """

    path: str | list[str]
    input_variables: list[str]
    output_variables: list[str] | None = None
    static_variables: list[str] = dataclasses.field(default_factory=list)
    sample_dim: str | None = "sample"
    time_dim: str | None = "time"
    spatial_dims: list[str] = dataclasses.field(default_factory=lambda: ["y", "x"])
    t_in: int = 1
    t_out: int = 1
    time_start: int = 0
    windows: Literal["first", "all"] = "all"
    split: dict = dataclasses.field(default_factory=lambda: {"train": 0.8, "val": 0.1, "test": 0.1})
    max_memory_gb: float = 4.0
    # periodic spatial axes (NS on the torus) or a grid with its boundary points (Darcy):
    # decides how H1 norms take derivatives (FFT or finite differences)
    periodic: bool = True
    reader: Literal["fields", "weather"] = "fields"
    dims: dict[str, str] | None = None

    @property
    def outputs(self) -> list[str]:
        return self.output_variables or self.input_variables

    @property
    def paths(self) -> list[str]:
        """``path`` as a list: one file per grid."""
        return [self.path] if isinstance(self.path, str) else list(self.path)

    def validate(self) -> None:
        if self.t_in < 1 or self.t_out < 1 or self.time_start < 0:
            raise ConfigError(
                f"data.t_in={self.t_in}, data.t_out={self.t_out}, time_start={self.time_start}",
                "t_in >= 1, t_out >= 1, time_start >= 0",
                "fix the time windows in the data section",
            )
        unknown = set(self.split) - set(_SPLITS)
        if unknown:
            raise ConfigError(
                f"data.split has unknown parts {sorted(unknown)}",
                "keys train, val, test (fractions or sample counts)",
                "rename them",
            )
        if self.reader == "weather":  # its layout: one series of (lat, lon) fields
            self.sample_dim, self.spatial_dims, self.periodic = None, ["lat", "lon"], False
        elif self.dims:
            raise ConfigError(
                f"data.dims={self.dims} with data.reader: {self.reader}",
                "data.dims only with reader: weather",
                "name the file's dims with data.sample_dim, data.time_dim and "
                "data.spatial_dims instead",
            )
        if not self.paths:
            raise ConfigError(
                "data.path is an empty list", "a file, or files at several grids", "name them"
            )
        if self.sample_dim is None and not self.time_dim:
            raise ConfigError(
                "data.sample_dim: null (one time series) without a data.time_dim",
                "a time dim to cut the series into windows",
                "set data.time_dim to the file's time dim",
            )
        overlap = set(self.static_variables) & set(self.input_variables + self.outputs)
        if overlap:
            raise ConfigError(
                f"data.static_variables {sorted(overlap)} are also input/output variables",
                "static fields apart from the time-dependent variables",
                "list each variable once",
            )


class FieldData:
    """A checked, ascending-coordinate view of one dataset file for a :class:`DataConfig`
    (a ``weather`` file keeps its rows north to south)."""

    def __init__(self, config: DataConfig, path: str | Path | None = None):
        self.config = config
        self.path = str(path or config.paths[0])
        self.sample_dim = config.sample_dim  # None: the file is one time series
        variables = list(dict.fromkeys(config.input_variables + config.outputs))
        variables += config.static_variables
        spatial = config.spatial_dims
        if config.reader == "weather":
            ds = _open_weather(self.path, variables, config.dims)
            self._check_names(ds)
            # latitudes may be Gaussian: the grid records their first step only (coords()
            # gives the file's); open_weather has checked that a spherical grid fits them
            lat, lon = ds["lat"].values.astype(np.float64), ds["lon"].values.astype(np.float64)
            starts, spacings = (lat[0], lon[0]), (lat[1] - lat[0], lon[1] - lon[0])
        else:
            ds = open_dataset(self.path)
            self._check_names(ds)
            for dim in spatial:
                if dim in ds.coords and ds.sizes[dim] > 1 and ds[dim].values[1] < ds[dim].values[0]:
                    ds = ds.isel({dim: slice(None, None, -1)})  # descending -> ascending
            starts, spacings = zip(*(uniform_axis(ds, d, self.path) for d in spatial))
        self.grid = Grid(
            list(spatial),
            [ds.sizes[d] for d in spatial],
            [float(s) for s in starts],
            [float(h) for h in spacings],
        )
        lead = [d for d in (self.sample_dim, config.time_dim) if d]
        self.ds = ds[variables].transpose(*lead, ..., *spatial)
        nbytes = sum(self.ds[v].nbytes for v in variables)
        self.lazy = nbytes > config.max_memory_gb * 2**30
        if self.lazy:  # larger than memory: statistics through dask, batches read directly
            # (xarray's lazy arrays read the chunks a batch needs once each; through dask,
            # every one-sample task would decompress the whole storage chunk it lies in)
            self._direct = self.ds
            self.ds = self.ds.chunk({lead[0]: 1})
        else:
            self.ds = self.ds.load()
            self._check_finite(self.ds, variables)
        self.n_samples = self.ds.sizes[self.sample_dim] if self.sample_dim else 1
        self.n_times = self.ds.sizes[config.time_dim] if config.time_dim else 1

    @property
    def series(self) -> bool:
        """The file is one time series (split in time blocks, not by sample)."""
        return self.sample_dim is None

    def _check_names(self, ds: xr.Dataset) -> None:
        cfg = self.config
        lead = [d for d in (self.sample_dim, cfg.time_dim) if d]
        for var in dict.fromkeys(cfg.input_variables + cfg.outputs + cfg.static_variables):
            if var not in ds.data_vars:
                raise DataError(
                    f"{self.path}: variable {var!r} is missing",
                    f"one of the variables in the file: {sorted(ds.data_vars)}",
                    "fix data.input_variables / output_variables / static_variables",
                )
            static = var in cfg.static_variables
            if static and cfg.time_dim in ds[var].dims:
                raise DataError(
                    f"{self.path}: static variable {var!r} has the time dim {cfg.time_dim!r}",
                    "static fields without a time dim",
                    f"list {var!r} under data.input_variables, or select one time of it",
                )
            wanted = ([] if static else lead) + list(cfg.spatial_dims)
            missing = [d for d in wanted if d not in ds[var].dims]
            if missing:
                raise DataError(
                    f"{self.path}: variable {var!r} has dims {ds[var].dims}, missing {missing}",
                    f"dims {wanted}",
                    "map the file's dim names with data.sample_dim, data.time_dim and "
                    "data.spatial_dims (data.dims for reader: weather)",
                )

    def _check_finite(
        self, ds: xr.Dataset, variables: list[str], samples: list[int] | None = None
    ) -> None:
        """Raise DataError naming the first NaN/Inf; ``samples``: the file's sample indices
        of ``ds``'s positions, when ``ds`` is a :meth:`read` of some samples."""
        for var in variables:
            values = ds[var].values
            bad = ~np.isfinite(values)
            if bad.any():
                index = dict(zip(ds[var].dims, (int(i[0]) for i in np.nonzero(bad))))
                if samples is not None and self.sample_dim in index:
                    index[self.sample_dim] = samples[index[self.sample_dim]]
                raise DataError(
                    f"{self.path}: variable {var!r} has {int(bad.sum())} NaN/Inf values "
                    f"(first at {index})",
                    "finite values everywhere",
                    "drop or fill the bad samples (e.g. ds.dropna or ds.fillna) first",
                )

    def check_resolution(self, n_modes: tuple[int, ...]) -> None:
        """Raise :class:`DataError` naming the dim if the grid is too coarse for ``n_modes``."""
        for axis, (dim, n, m) in enumerate(zip(self.grid.dims, self.grid.sizes, n_modes)):
            need = min_grid_points(m, half=axis == len(n_modes) - 1)
            if n < need:
                raise DataError(
                    f"{self.path}: dim {dim!r} has {n} points but the model keeps "
                    f"n_modes[{axis}]={m} there, which needs at least {need}",
                    f"at least {need} points along {dim!r}",
                    f"use finer data or lower n_modes[{axis}] to at most {n}",
                )

    def coords(self) -> dict[str, np.ndarray]:
        """The spatial coordinates as the data holds them (the grid's where the file has none)."""
        regular = self.grid.coords()
        return {d: self.ds[d].values if d in self.ds.coords else regular[d] for d in self.grid.dims}

    @property
    def time_step(self) -> dict:
        """The records' time step, JSON-able for checkpoints: ``{"time_step": dt}`` (numeric
        time), ``{"time_step_ns": n}`` (datetimes), ``{}`` where the file does not say."""
        dim = self.config.time_dim
        if not dim or dim not in self.ds.coords or self.n_times < 2:
            return {}
        times = self.ds[dim].values
        step = times[1] - times[0]
        if np.issubdtype(np.asarray(step).dtype, np.timedelta64):
            return {"time_step_ns": int(step / np.timedelta64(1, "ns"))}
        return {"time_step": float(step)}

    @property
    def units(self) -> dict:
        """``{"units": {variable: units or None}}`` of the variables read, for checkpoints."""
        cfg = self.config
        variables = dict.fromkeys(cfg.input_variables + cfg.outputs + cfg.static_variables)
        return {"units": {v: self.ds[v].attrs.get("units") for v in variables}}

    def _split_counts(self, n: int) -> dict[str, int]:
        """How many samples (or time steps of a series) of ``n`` each split takes: counts, or
        fractions with their cumulative boundaries rounded (they never overshoot)."""
        parts = {"train": 0.8, "val": 0.1, "test": 0.1} | self.config.split
        counts, used, cumulative = {}, 0, 0.0
        for name in _SPLITS:
            value = parts.get(name, 0)
            if value >= 1:  # a count
                counts[name] = int(value)
            else:
                cumulative += value
                counts[name] = max(0, int(round(cumulative * n)) - used)
            used += counts[name]
        if used > n:
            what = "time steps" if self.series else "samples"
            raise DataError(
                f"{self.path}: split {counts} needs {used} {what}, file has {n}",
                "a split that fits the data",
                "lower data.split counts or use fractions",
            )
        return counts

    def _block(self, split: str) -> tuple[int, int]:
        """``[start, stop)`` of ``split``'s samples (or time steps of a series)."""
        if split not in _SPLITS:
            raise ConfigError(f"Unknown split {split!r}", "train, val or test", "fix the name")
        counts = self._split_counts(self.n_times if self.series else self.n_samples)
        start = sum(counts[s] for s in _SPLITS[: _SPLITS.index(split)])
        return start, start + counts[split]

    def split_indices(self, split: str) -> np.ndarray:
        """Sample indices of ``train``, ``val`` or ``test`` (fractions or counts, in order);
        ``[0]`` for a series with steps in the split (its windows are the split)."""
        start, stop = self._block(split)
        if self.series:
            return np.arange(1 if stop > start else 0)
        return np.arange(start, stop)

    def split_values(self, variable: str, split: str) -> xr.DataArray:
        """``variable`` over ``split``'s part of the data: its samples, or its time block of a
        series (a static field whole)."""
        if self.series:
            index = {self.config.time_dim: slice(*self._block(split))}
        else:
            index = {self.sample_dim: self.split_indices(split)}
        array = self.ds[variable]
        return array.isel({d: i for d, i in index.items() if d in array.dims})

    def windows(self, split: str) -> list[int]:
        """Start times ``t0`` of ``split``'s input windows: the same within each sample, or
        within the split's time block of a series (windows never cross into the next block)."""
        cfg = self.config
        if not cfg.time_dim:
            return [0]
        start, stop = self._block(split) if self.series else (0, self.n_times)
        first = max(start, cfg.time_start)
        last = stop - cfg.t_in - cfg.t_out
        if last < first:
            if self.series and stop == start:
                return []  # an empty split
            where = f"the {split} block {self._block(split)}" if self.series else "a sample"
            raise DataError(
                f"{self.path}: {where} of {self.n_times} time steps cannot hold t_in={cfg.t_in} "
                f"+ t_out={cfg.t_out} steps from time_start={cfg.time_start}",
                f"at least {cfg.t_in + cfg.t_out} time steps from {first}",
                "lower t_in/t_out, give the split more steps or use longer trajectories",
            )
        return [first] if cfg.windows == "first" else list(range(first, last + 1))

    def dataset(self, split: str) -> WindowDataset:
        return WindowDataset(self, self.split_indices(split), self.windows(split))

    def read(
        self,
        samples: list[int],
        rows: tuple[int, int] | None = None,
        times: list[int] | None = None,
    ) -> xr.Dataset:
        """The variables of ``samples`` (ignored for a series) in memory: one read per
        variable (for lazily read data, one dask computation for a whole batch instead of one
        per pair), checked for NaN/Inf. ``rows``: only these rows of the first spatial axis
        (the part of each field one process holds when several share it); ``times``: only
        these time steps (a batch's windows of a long series) — the rest is not read."""
        index = {self.sample_dim: samples} if self.sample_dim else {}
        if rows is not None:
            index[self.config.spatial_dims[0]] = slice(*rows)
        if times is not None:
            index[self.config.time_dim] = times
        source = self._direct if self.lazy else self.ds
        ds = xr.Dataset({v: a.isel({d: i for d, i in index.items() if d in a.dims})
                         for v, a in source.data_vars.items()})  # fmt: skip
        if self.lazy:
            ds = ds.load()
            self._check_finite(ds, list(ds.data_vars), samples if self.sample_dim else None)
        return ds

    def fields(
        self, variables: list[str], sample: int, times: slice | list[int] | None, source
    ) -> np.ndarray:
        """``(len(variables) * n_times, *spatial)`` float32 of position ``sample`` of
        ``source`` (this file's dataset or a :meth:`read` of it); static variables (no time
        dim) give one channel each."""
        cfg = self.config
        out = []
        for var in variables:
            array = source[var]
            index = {self.sample_dim: sample, cfg.time_dim: times}
            values = array.isel({d: i for d, i in index.items() if d in array.dims}).values
            values = np.asarray(values, dtype=np.float32)
            out.append(values.reshape(-1, *values.shape[-len(cfg.spatial_dims) :]))
        return np.concatenate(out, axis=0)


def _open_weather(path: str, variables: list[str], dims: dict | None) -> xr.Dataset:
    """A weather file in the sphere layout, variables under their config names
    (``name@level``, which open_weather stores as ``name_level``)."""
    from opflow.data.weather import open_weather  # weather imports this module's io

    ds = open_weather(path, variables, dims)
    return ds.rename({v.replace("@", "_"): v for v in variables if "@" in v})


def check_time_steps(config: DataConfig, rollout: bool) -> None:
    """Rollouts feed outputs back as inputs: the variables must be the same."""
    if rollout and config.outputs != config.input_variables:
        raise ConfigError(
            "training.rollout needs the same input and output variables, got "
            f"{config.input_variables} -> {config.outputs}",
            "output_variables equal to input_variables (or unset)",
            "set training.rollout: false for a map between different variables",
        )
