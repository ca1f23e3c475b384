"""A uniform tensor-product grid as the data files give it: dim names, sizes, start and
spacing per axis (what a checkpoint records of its training data)."""

from __future__ import annotations

import dataclasses

import numpy as np
import xarray as xr

from opflow.errors import DataError

__all__ = ["Grid", "uniform_axis"]


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


def uniform_axis(ds: xr.Dataset, dim: str, path: str) -> tuple[float, float]:
    """``(start, spacing)`` of ``dim`` in ``ds``; a DataError where it is not uniform."""
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
