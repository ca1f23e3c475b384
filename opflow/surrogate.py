"""The embedding API: a trained operator as an object that steps physical states.

>>> surrogate = opflow.load("runs/quickstart")
>>> nxt = surrogate(state)            # xarray.Dataset / NumPy / torch in, same kind out
>>> traj = surrogate.rollout(state, steps=20)

A :class:`Surrogate` holds the model, the normaliser fitted at training time, the task (which
variables and how many time steps go in and come out) and the training grid's dim names. It
works at any resolution the model accepts: the grid is read from the input.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr

from opflow.data.grid import Grid
from opflow.data.normalizer import Normalizer
from opflow.errors import ConfigError, DataError, ShapeError
from opflow.run.execution import resolve_device
from opflow.run.spec import PhysicalTaskModel, Task, TaskModel, load_trained

__all__ = ["Task", "Surrogate", "load"]


class Surrogate:
    """A trained operator with its normaliser: physical fields in, physical fields out.

    It runs where its model's weights are (device and dtype, see :func:`load`): inputs are
    moved there, tensor outputs come back on the input's device.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        normalizer: Normalizer,
        task: Task,
        grid: Grid,
        time_step: float | np.timedelta64 | None = None,
    ):
        self.model = model.eval()
        self.time_step = time_step  # between the training data's records, when it was known
        self.task_model = TaskModel(model, task)
        self.physical_model = PhysicalTaskModel(self.task_model, normalizer)
        self.task = task
        self.grid = grid

    @property
    def normalizer(self) -> Normalizer:
        """The normaliser fitted at training time (inside :attr:`physical_model`)."""
        return self.physical_model.normalizer

    @normalizer.setter
    def normalizer(self, normalizer: Normalizer) -> None:
        self.physical_model.normalizer = normalizer

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    # -- tensors ---------------------------------------------------------------------------
    def forward_normalized(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Normalised ``(B, in_channels, *s)`` -> normalised ``(B, n_out * steps, *s)``."""
        return self.task_model(x, steps)

    def predict(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        """Physical ``(B, in_channels, *s)`` -> physical ``(B, n_out * steps, *s)``, on the
        model's device and in its dtype."""
        task = self.task
        if x.ndim != 2 + len(self.grid.dims) or x.shape[1] != task.in_channels:
            raise ShapeError(
                f"The surrogate got a tensor of shape {tuple(x.shape)}",
                f"(batch, {task.in_channels} = {len(task.input_variables)} variables x "
                f"{task.t_in} steps + {len(task.static_variables)} static fields, "
                f"{len(self.grid.dims)} spatial axes)",
                "stack the input variables' last t_in time steps as channels, then the static "
                "fields",
            )
        steps = task.t_out if steps is None else steps
        if steps != task.t_out and not task.rollout:
            raise ShapeError(
                f"{steps} output steps requested from a model trained to output {task.t_out}",
                f"steps = {task.t_out}",
                "use rollout() for longer horizons",
            )
        return self.physical_model(x.to(self.device, self.dtype), steps)

    # -- user-facing -----------------------------------------------------------------------
    def __call__(self, state, steps: int | None = None):
        """Predict the next ``t_out`` steps (or ``steps`` with a rollout model).

        ``state``: an ``xarray.Dataset`` holding the input variables with dims
        ``([sample,] [time,] *spatial)`` (the last ``t_in`` time steps are used), or a NumPy
        array / torch tensor ``([batch,] in_channels, *spatial)``. Returns the same kind.
        """
        if isinstance(state, xr.Dataset):
            return self._call_xarray(state, steps)
        if isinstance(state, np.ndarray):
            return self(torch.from_numpy(state), steps).numpy()
        if torch.is_tensor(state):
            unbatched = state.ndim == 1 + len(self.grid.dims)
            x = state[None] if unbatched else state
            with torch.no_grad():
                y = self.predict(x, steps).to(state.device)
            return y[0] if unbatched else y
        raise ShapeError(
            f"Cannot step a state of type {type(state).__name__}",
            "an xarray.Dataset, a NumPy array or a torch tensor",
            "convert the state first",
        )

    def rollout(self, state, steps: int):
        """Apply the surrogate repeatedly for ``steps`` new time steps.

        Works for any model whose outputs are its inputs (same variables); each application
        consumes the latest ``t_in`` steps. Returns the new steps only, of the input's kind.
        """
        task = self.task
        if task.output_variables != task.input_variables:
            raise ShapeError(
                "rollout needs a surrogate whose outputs are its inputs, got "
                f"{task.input_variables} -> {task.output_variables}",
                "the same input and output variables",
                "call the surrogate once instead",
            )
        if isinstance(state, xr.Dataset):
            return self._call_xarray(state, steps, repeat=True)
        x = state if torch.is_tensor(state) else torch.from_numpy(np.asarray(state))
        unbatched = x.ndim == 1 + len(self.grid.dims)
        out = self._repeat(x[None] if unbatched else x, steps).to(x.device)
        out = out[0] if unbatched else out
        return out if torch.is_tensor(state) else out.numpy()

    def _repeat(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        task = self.task
        x = x.to(self.device, self.dtype)
        n_vars = len(task.input_variables)
        x, static = x.split([task.history_channels, len(task.static_variables)], dim=1)
        produced = []
        with torch.no_grad():
            while sum(p.shape[2] for p in produced) < steps:
                y = self.predict(torch.cat((x, static), dim=1)).unflatten(1, (n_vars, task.t_out))
                produced.append(y)
                history = torch.cat((x.unflatten(1, (n_vars, task.t_in)), y), dim=2)
                x = history[:, :, -task.t_in :].flatten(1, 2)
        return torch.cat(produced, dim=2)[:, :, :steps].flatten(1, 2)

    def _call_xarray(self, ds: xr.Dataset, steps: int | None, repeat: bool = False):
        """The xarray round trip: the output is labelled like the input — its spatial
        coordinates in the input's order (a descending latitude stays descending), time labels
        continuing the input's by the data's time step, the input's dtype, and its dataset,
        variable and coordinate attributes and non-dimension coordinates."""
        task, spatial = self.task, self.grid.dims
        wanted = task.input_variables + task.static_variables
        missing = [v for v in wanted if v not in ds.data_vars]
        if missing:
            raise DataError(
                f"The state has no variable(s) {missing}",
                f"variables {wanted}",
                f"pass a Dataset with {wanted}",
            )
        has_sample = task.sample_dim in ds.dims
        time_dim = task.time_dim if task.time_dim and task.time_dim in ds.dims else None
        lead = ([task.sample_dim] if has_sample else []) + ([time_dim] if time_dim else [])
        # the model sees the training data's orientation (ascending coordinates, or a weather
        # file's rows north to south: a negative grid spacing); the output is put back
        flipped = [
            d
            for d, spacing in zip(spatial, self.grid.spacing)
            if d in ds.coords and ds.sizes[d] > 1 and bool(ds[d][1] < ds[d][0]) != (spacing < 0)
        ]
        numpy_dtype = np.float64 if self.dtype == torch.float64 else np.float32
        arrays = []
        for var in wanted:
            static = var in task.static_variables
            da = ds[var]
            for dim in spatial:
                if dim not in da.dims:
                    raise DataError(
                        f"Variable {var!r} has dims {da.dims}, no {dim!r}",
                        f"spatial dims {spatial}",
                        "rename the state's dims to the training data's names",
                    )
            lead_here = [d for d in lead if d in da.dims] if static else lead
            da = da.isel({d: slice(None, None, -1) for d in flipped})
            values = np.asarray(da.transpose(*lead_here, *spatial).values, dtype=numpy_dtype)
            if not has_sample or task.sample_dim not in da.dims:
                values = values[None]
            if static:  # one channel, for every sample
                n = ds.sizes[task.sample_dim] if has_sample else 1
                values = np.broadcast_to(values[:, None], (n, 1, *values.shape[1:]))
            elif time_dim:
                if values.shape[1] < task.t_in:
                    raise DataError(
                        f"The state holds {values.shape[1]} time steps of {var!r}",
                        f"at least t_in = {task.t_in}",
                        "pass a longer history",
                    )
                values = values[:, -task.t_in :]
            else:
                values = values[:, None]
            arrays.append(values)
        x = torch.from_numpy(np.concatenate(arrays, axis=1))
        n_steps = task.t_out if steps is None else steps
        with torch.no_grad():
            y = self._repeat(x, n_steps) if repeat else self.predict(x, steps)
        y = y.unflatten(1, (len(task.output_variables), n_steps)).cpu().numpy()
        out_dim = time_dim or "step"
        dims = ([task.sample_dim] if has_sample else []) + [out_dim, *spatial]
        kept = {task.sample_dim, *spatial}
        coords = {name: c for name, c in ds.coords.items() if set(c.dims) <= kept}
        coords[out_dim] = self._next_times(ds, time_dim, n_steps)
        data_vars = {}
        for i, var in enumerate(task.output_variables):
            field = y[:, i] if has_sample else y[0, i]
            source = ds[var] if var in ds else None
            if source is not None and np.issubdtype(source.dtype, np.floating):
                field = field.astype(source.dtype, copy=False)  # float64 in, float64 out
            out = xr.DataArray(
                field, dims=dims, attrs=dict(source.attrs) if source is not None else {}
            )
            # back to the input's order along the flipped axes
            data_vars[var] = out.isel({d: slice(None, None, -1) for d in flipped})
        return xr.Dataset(data_vars, coords=coords, attrs=dict(ds.attrs))

    def _next_times(self, ds: xr.Dataset, time_dim: str | None, n_steps: int) -> xr.DataArray:
        """Labels of the predicted steps: the input's last time plus 1..n time steps (the
        state's own spacing, else the training data's), keeping the coordinate's attributes;
        ``step`` numbers 1..n where there is no time axis to continue."""
        if not time_dim or time_dim not in ds.coords:
            return xr.DataArray(np.arange(1, n_steps + 1), dims=[time_dim or "step"])
        times = ds[time_dim]
        values = times.values
        step = values[-1] - values[-2] if len(values) >= 2 else self.time_step
        if step is None:
            raise DataError(
                f"The state has one {time_dim!r} label and the run does not record its data's "
                "time step",
                "two or more time labels in the state",
                "pass the last two time steps, or retrain to record the time step",
            )
        labels = values[-1] + step * np.arange(1, n_steps + 1)
        return xr.DataArray(labels, dims=[time_dim], attrs=dict(times.attrs))


def load(
    run_dir: str | Path,
    checkpoint: str = "best",
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Surrogate:
    """Load the ``best`` (or ``last``) checkpoint of a training run as a :class:`Surrogate`.

    ``device``: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto``; ``dtype``: ``torch.float32``
    or ``torch.float64`` (float64 end to end: weights, inputs, outputs).
    """
    if dtype not in (torch.float32, torch.float64):
        raise ConfigError(
            f"opflow.load(dtype={dtype})",
            "torch.float32 or torch.float64",
            "for half precision, train with training.precision bf16-mixed / fp16-mixed",
        )
    trained = load_trained(Path(run_dir), checkpoint, resolve_device(device), dtype)
    meta = trained.meta
    time_step = (
        np.timedelta64(meta["time_step_ns"], "ns")
        if "time_step_ns" in meta
        else meta.get("time_step")
    )
    return Surrogate(trained.model, trained.normalizer, trained.task, trained.grid, time_step)
