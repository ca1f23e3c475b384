"""Torch datasets over xarray datasets: fields on a grid, mapped from inputs to outputs.

A :class:`DataConfig` names the variables, the dims (any names: ``lat``/``lon`` work as well as
``y``/``x``), the time windows and the split. :class:`FieldData` opens the file, checks it
(missing variables or dims, NaN/Inf, non-uniform axes; descending coordinates are flipped),
and hands out :class:`WindowDataset` s of ``(input, target)`` pairs:

* ``input``: ``(len(input_variables) * t_in, *spatial)`` -- ``t_in`` consecutive time steps
  of each input variable, variable-major;
* ``target``: ``(len(output_variables) * t_out, *spatial)`` -- the ``t_out`` steps after them.

Static data (no time dim) map input variables to output variables directly. Samples are split
by index (train first, then validation, then test), so every resolution of one dataset splits
the same way.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import xarray as xr

from opflow.data.io import open_dataset
from opflow.errors import ConfigError, DataError
from opflow.spectral.fourier import min_grid_points

__all__ = ["DataConfig", "FieldData", "WindowDataset", "Grid", "check_time_steps"]


@dataclasses.dataclass
class DataConfig:
    """Which data to learn from, and how inputs map to targets."""

    path: str
    input_variables: list[str]
    output_variables: list[str] | None = None
    sample_dim: str = "sample"
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

    @property
    def outputs(self) -> list[str]:
        return self.output_variables or self.input_variables

    def validate(self) -> None:
        if self.t_in < 1 or self.t_out < 1 or self.time_start < 0:
            raise ConfigError(
                f"data.t_in={self.t_in}, data.t_out={self.t_out}, time_start={self.time_start}",
                "t_in >= 1, t_out >= 1, time_start >= 0",
                "fix the time windows in the data section",
            )
        unknown = set(self.split) - {"train", "val", "test"}
        if unknown:
            raise ConfigError(
                f"data.split has unknown parts {sorted(unknown)}",
                "keys train, val, test (fractions or sample counts)",
                "rename them",
            )


@dataclasses.dataclass
class Grid:
    """A uniform tensor-product grid: dim names, sizes, start and spacing per axis."""

    dims: list[str]
    sizes: list[int]
    start: list[float]
    spacing: list[float]

    def coords(self) -> dict[str, np.ndarray]:
        return {
            d: s0 + h * np.arange(n)
            for d, n, s0, h in zip(self.dims, self.sizes, self.start, self.spacing)
        }

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def _uniform_axis(ds: xr.Dataset, dim: str, path: str) -> tuple[float, float]:
    if dim not in ds.coords:
        n = ds.sizes[dim]
        return 0.0, 1.0 / n  # no coordinate: the unit interval, periodic
    values = np.asarray(ds[dim].values, dtype=np.float64)
    if values.size < 2:
        raise DataError(
            f"{path}: dim {dim!r} has {values.size} point(s)",
            "at least 2 grid points",
            "use a data set with a real grid along this dim",
        )
    steps = np.diff(values)
    h = steps.mean()
    if not np.allclose(steps, h, rtol=1e-5, atol=1e-9 * abs(h)):
        worst = int(np.argmax(np.abs(steps - h)))
        raise DataError(
            f"{path}: coordinate {dim!r} is not uniformly spaced (step {steps[worst]:.6g} at "
            f"index {worst}, mean step {h:.6g})",
            f"a uniform grid along {dim!r}: Fourier layers need equispaced points",
            f"regrid {dim!r} to a uniform spacing (e.g. xarray's interp) before training",
        )
    return float(values[0]), float(h)


class FieldData:
    """A checked, ascending-coordinate view of one dataset file for a :class:`DataConfig`."""

    def __init__(self, config: DataConfig, path: str | Path | None = None):
        self.config = config
        self.path = str(path or config.path)
        ds = open_dataset(self.path)
        self._check_names(ds)
        spatial = config.spatial_dims
        for dim in spatial:
            if dim in ds.coords and ds.sizes[dim] > 1 and ds[dim].values[1] < ds[dim].values[0]:
                ds = ds.isel({dim: slice(None, None, -1)})  # descending -> ascending
        starts, spacings = zip(*(_uniform_axis(ds, d, self.path) for d in spatial))
        self.grid = Grid(
            list(spatial), [ds.sizes[d] for d in spatial], list(starts), list(spacings)
        )
        variables = list(dict.fromkeys(config.input_variables + config.outputs))
        lead = [config.sample_dim] + ([config.time_dim] if config.time_dim else [])
        self.ds = ds[variables].transpose(*lead, *spatial)
        nbytes = sum(self.ds[v].nbytes for v in variables)
        self.lazy = nbytes > config.max_memory_gb * 2**30
        if self.lazy:  # larger than memory: statistics through dask, batches read directly
            # (xarray's lazy arrays read the chunks a batch needs once each; through dask,
            # every one-sample task would decompress the whole storage chunk it lies in)
            self._direct = self.ds
            self.ds = self.ds.chunk({config.sample_dim: 1})
        else:
            self.ds = self.ds.load()
            self._check_finite(self.ds, variables)
        self.n_samples = self.ds.sizes[config.sample_dim]
        self.n_times = self.ds.sizes[config.time_dim] if config.time_dim else 1

    def _check_names(self, ds: xr.Dataset) -> None:
        cfg = self.config
        for var in dict.fromkeys(cfg.input_variables + cfg.outputs):
            if var not in ds.data_vars:
                raise DataError(
                    f"{self.path}: variable {var!r} is missing",
                    f"one of the variables in the file: {sorted(ds.data_vars)}",
                    "fix data.input_variables / data.output_variables",
                )
            wanted = (
                [cfg.sample_dim] + ([cfg.time_dim] if cfg.time_dim else []) + list(cfg.spatial_dims)
            )
            missing = [d for d in wanted if d not in ds[var].dims]
            if missing:
                raise DataError(
                    f"{self.path}: variable {var!r} has dims {ds[var].dims}, missing {missing}",
                    f"dims {wanted}",
                    "map the file's dim names with data.sample_dim, data.time_dim and "
                    "data.spatial_dims",
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
                if samples is not None:
                    index[self.config.sample_dim] = samples[index[self.config.sample_dim]]
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
        variables = dict.fromkeys(self.config.input_variables + self.config.outputs)
        return {"units": {v: self.ds[v].attrs.get("units") for v in variables}}

    def split_indices(self, split: str) -> np.ndarray:
        """Sample indices of ``train``, ``val`` or ``test`` (fractions or counts, in order)."""
        parts = {"train": 0.8, "val": 0.1, "test": 0.1} | self.config.split
        counts, used, cumulative = {}, 0, 0.0
        for name in ("train", "val", "test"):
            value = parts.get(name, 0)
            if value >= 1:  # a sample count
                counts[name] = int(value)
            else:  # a fraction: round the cumulative boundary so fractions never overshoot
                cumulative += value
                counts[name] = max(0, int(round(cumulative * self.n_samples)) - used)
            used += counts[name]
        if sum(counts.values()) > self.n_samples:
            raise DataError(
                f"{self.path}: split {counts} needs {sum(counts.values())} samples, file has "
                f"{self.n_samples}",
                "a split that fits the number of samples",
                "lower data.split counts or use fractions",
            )
        start = {"train": 0, "val": counts["train"], "test": counts["train"] + counts["val"]}
        if split not in start:
            raise ConfigError(f"Unknown split {split!r}", "train, val or test", "fix the name")
        return np.arange(start[split], start[split] + counts[split])

    def windows(self) -> list[int]:
        """Start times ``t0`` of the input windows within each sample."""
        cfg = self.config
        if not cfg.time_dim:
            return [0]
        last = self.n_times - cfg.t_in - cfg.t_out
        if last < cfg.time_start:
            raise DataError(
                f"{self.path}: {self.n_times} time steps cannot hold t_in={cfg.t_in} + "
                f"t_out={cfg.t_out} steps from time_start={cfg.time_start}",
                f"at least {cfg.time_start + cfg.t_in + cfg.t_out} time steps",
                "lower t_in/t_out or generate longer trajectories",
            )
        return [cfg.time_start] if cfg.windows == "first" else list(range(cfg.time_start, last + 1))

    def dataset(self, split: str) -> WindowDataset:
        return WindowDataset(self, self.split_indices(split))

    def read(self, samples: list[int], rows: tuple[int, int] | None = None) -> xr.Dataset:
        """The variables of ``samples`` in memory: one read per variable (for lazily read
        data, one dask computation for a whole batch instead of one per pair), checked for
        NaN/Inf. ``rows``: only these rows of the first spatial axis (the part of each field
        one process holds when several share it) — the rest is not read."""
        index = {self.config.sample_dim: samples}
        if rows is not None:
            index[self.config.spatial_dims[0]] = slice(*rows)
        ds = (self._direct if self.lazy else self.ds).isel(index)
        if self.lazy:
            ds = ds.load()
            self._check_finite(ds, list(ds.data_vars), samples)
        return ds

    def fields(
        self, variables: list[str], sample: int, times: slice | None, source: xr.Dataset
    ) -> np.ndarray:
        """``(len(variables) * n_times, *spatial)`` float32 of position ``sample`` of
        ``source`` (this file's dataset or a :meth:`read` of it)."""
        cfg = self.config
        out = []
        for var in variables:
            index = {cfg.sample_dim: sample}
            if cfg.time_dim:
                index[cfg.time_dim] = times
            values = np.asarray(source[var].isel(index).values, dtype=np.float32)
            out.append(values.reshape(-1, *values.shape[-len(cfg.spatial_dims) :]))
        return np.concatenate(out, axis=0)


class WindowDataset(torch.utils.data.Dataset):
    """``(input, target)`` float32 tensor pairs of the samples ``indices`` of a FieldData."""

    def __init__(self, data: FieldData, indices: np.ndarray, rows: tuple[int, int] | None = None):
        self.data = data
        self.indices = indices
        self.starts = data.windows()
        self.rows = rows  # of the first spatial axis; None: whole fields

    def with_rows(self, rows: tuple[int, int]) -> WindowDataset:
        """The same pairs, holding only ``rows`` of the first spatial axis (domain
        parallelism: lazily read data is read only there)."""
        return WindowDataset(self.data, self.indices, rows)

    def __len__(self) -> int:
        return len(self.indices) * len(self.starts)

    def batch(self, items) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked ``(inputs, targets)`` of the pairs ``items`` (any iterable of indices)."""
        items = [int(i) for i in items]
        samples = sorted({int(self.indices[i // len(self.starts)]) for i in items})
        if self.data.lazy:  # read the batch's samples at once, then cut the windows
            source = self.data.read(samples, self.rows)
            position = {s: k for k, s in enumerate(samples)}
        else:
            source, position = self.data.ds, {s: s for s in samples}
            if self.rows is not None:
                source = source.isel({self.data.config.spatial_dims[0]: slice(*self.rows)})
        pairs = [self._pair(i, source, position) for i in items]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def loader(
        self, batches: list[torch.Tensor], workers: int = 0, pin_memory: bool = False
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """``batch(b)`` for each index list ``b`` of ``batches``, in order.

        With ``workers > 0`` that many processes read the batches ahead (a
        :class:`torch.utils.data.DataLoader`, two batches each), so that reading data from
        disk overlaps with training instead of adding to it.
        """
        if workers == 0:
            return (self.batch(b) for b in batches)
        return torch.utils.data.DataLoader(
            _BatchReader(self),
            sampler=batches,
            batch_size=None,  # the sampler yields whole batches; _BatchReader reads each
            num_workers=workers,
            pin_memory=pin_memory,
            worker_init_fn=_reader_init,
        )

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batch([item])
        return x[0], y[0]

    def _pair(
        self, item: int, source: xr.Dataset, position: dict[int, int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, data = self.data.config, self.data
        sample = position[int(self.indices[item // len(self.starts)])]
        t0 = self.starts[item % len(self.starts)]
        if cfg.time_dim:
            x = data.fields(cfg.input_variables, sample, slice(t0, t0 + cfg.t_in), source)
            end = t0 + cfg.t_in + cfg.t_out
            y = data.fields(cfg.outputs, sample, slice(t0 + cfg.t_in, end), source)
        else:
            x = data.fields(cfg.input_variables, sample, None, source)
            y = data.fields(cfg.outputs, sample, None, source)
        return torch.from_numpy(x), torch.from_numpy(y)


class _BatchReader(torch.utils.data.Dataset):
    """A dataset whose items are whole batches: ``reader[indices] = dataset.batch(indices)``."""

    def __init__(self, dataset: WindowDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.batch(indices)


def _reader_init(worker_id: int) -> None:
    """A reader process computes dask graphs in its own thread: the processes are the
    parallelism, and dask's thread pool would only compete with the training threads."""
    import dask

    dask.config.set(scheduler="synchronous")


def check_time_steps(config: DataConfig, rollout: bool) -> None:
    """Rollouts feed outputs back as inputs: the variables must be the same."""
    if rollout and config.outputs != config.input_variables:
        raise ConfigError(
            "training.rollout needs the same input and output variables, got "
            f"{config.input_variables} -> {config.outputs}",
            "output_variables equal to input_variables (or unset)",
            "set training.rollout: false for a map between different variables",
        )
