r"""Shallow-water equations on the rotating sphere: torch-harmonics' spectral solver, wrapped.

The engine is :class:`torch_harmonics.examples.ShallowWaterSolver` (vorticity–divergence form,
spectral transform method, third-order Adams–Bashforth with implicit hyperdiffusion; Earth's
radius, rotation and gravity, mean depth ``havg`` = 10 km). This module only fixes what a data
set needs around it:

* a reproducible random initial state per sample (torch-harmonics draws from torch's global
  generator; here each sample seeds its own), the SFNO paper's random condition at Mach ``mach``;
* the record times (``record_hours`` apart, ``n_records`` after the initial state) and the time
  step (``record_hours`` split into ``steps_per_hour`` × hours equal steps);
* evaluation of the spectral state on *any* grid of the same kind, so the same solution is
  stored at several resolutions exactly (band-limited: no interpolation error);
* physical variables: geopotential height ``φ/g`` (m), relative vorticity and divergence (1/s).

The solver keeps ``lmax = mmax = ceil(nlat / 3)`` degrees on its grid (torch-harmonics' data
set does the same). The stored grids are point samples of that band-limited solution, exact on
any grid whose longitudes resolve its orders.
"""

from __future__ import annotations

import math
import warnings

import torch

from opflow.errors import ConfigError
from opflow.spectral.sphere import SphereGrid

__all__ = ["SOLVER_VERSION", "solve_sample", "VARIABLES"]

SOLVER_VERSION = "opflow.shallow_water/2 (torch_harmonics.examples.ShallowWaterSolver 0.9.3)"
VARIABLES = {
    "geopotential_height": ("m", "geopotential height phi / g"),
    "vorticity": ("s-1", "relative vorticity"),
    "divergence": ("s-1", "horizontal divergence"),
}


def _solver(grid: SphereGrid, dt_seconds: float):
    from torch_harmonics.examples import ShallowWaterSolver

    lmax = math.ceil(grid.nlat / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch-harmonics' truncation notice
        return ShallowWaterSolver(
            grid.nlat, grid.nlon, dt_seconds, lmax=lmax, mmax=lmax, grid=grid.kind
        ).double()


def _synthesis(grid: SphereGrid, lmax: int, mmax: int, truncate: bool = False):
    """Inverse SHT (torch-harmonics' solver convention: no Condon–Shortley phase) on ``grid``,
    of the solution's degrees ``l < lmax`` and orders ``m < mmax``, or with ``truncate`` of
    those the grid resolves (its default band limit): ``synth(spec)`` on the full spectrum."""
    from torch_harmonics import InverseRealSHT

    if truncate:
        lmax = min(lmax, grid.max_degree)
        mmax = min(mmax, lmax, grid.max_order)
        inverse = InverseRealSHT(
            grid.nlat, grid.nlon, lmax=lmax, mmax=mmax, grid=grid.kind, csphase=False
        ).double()
        return lambda spec: inverse(spec[..., :lmax, :mmax])
    # point values of the band-limited solution are exact on any grid; only orders above the
    # longitudes' Nyquist would alias
    if mmax > grid.max_order:
        raise ConfigError(
            f"The {grid.nlat} x {grid.nlon} grid resolves orders m < {grid.max_order}, but the "
            f"solution has m < {mmax}",
            f"at least {2 * (mmax - 1)} longitudes on every stored grid",
            "store finer grids, solve on a coarser one, or store truncated fields "
            "(recipe storage: truncate)",
        )
    return InverseRealSHT(
        grid.nlat, grid.nlon, lmax=lmax, mmax=mmax, grid=grid.kind, csphase=False
    ).double()


def solve_sample(
    seed: int,
    solve_grid: SphereGrid,
    store_grids: list[SphereGrid],
    record_hours: float,
    n_records: int,
    steps_per_hour: int = 24,
    mach: float = 0.2,
    truncate: bool = False,
) -> list[torch.Tensor]:
    """One trajectory from the random initial state of ``seed``.

    Returns one float64 tensor per grid of ``store_grids``:
    ``(n_records + 1, 3, nlat, nlon)``, variables in :data:`VARIABLES` order, the initial
    state first. ``truncate``: each grid holds the solution truncated to the degrees it
    resolves (a coarse grid then lacks the finer grids' detail) instead of all of it.
    """
    steps = max(1, round(record_hours * steps_per_hour))
    solver = _solver(solve_grid, record_hours * 3600.0 / steps)
    syntheses = [_synthesis(g, solver.lmax, solver.mmax, truncate) for g in store_grids]
    torch.manual_seed(seed)  # torch-harmonics draws the initial state from the global RNG
    state = solver.random_initial_condition(mach=mach)
    # torch-harmonics draws the degree-0 vorticity and divergence too: a global mean that no
    # flow on a closed sphere has (Stokes, Gauss). The solver's winds ignore it, its fluxes
    # do not; it would stay in every record as ~5% of the fields' RMS.
    state[1:, 0, 0] = 0
    records = [state]
    for _ in range(n_records):
        state = solver.timestep(state, steps)
        if not torch.isfinite(torch.view_as_real(state)).all():
            raise ConfigError(
                f"The shallow-water run of seed {seed} blew up",
                "a stable time step",
                "raise steps_per_hour or lower mach",
            )
        records.append(state)
    spec = torch.stack(records)  # (T, 3, lmax, mmax): geopotential, vorticity, divergence
    scale = torch.tensor([1.0 / float(solver.gravity), 1.0, 1.0], dtype=torch.float64)
    return [synth(spec) * scale[:, None, None] for synth in syntheses]
