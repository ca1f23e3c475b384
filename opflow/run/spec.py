"""A trained model as a *spec* plus weights: what the trainer writes and everyone else reads.

The spec is the registered model name and its arguments, the :class:`Task` (which variables
and time steps go in and come out), the normaliser and the training grid. This module builds a
model from a spec and reads a run's checkpoint back into a :class:`TrainedModel`; the trainer,
the evaluator and :func:`opflow.load` all use it, so none of them imports another to get a
model.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import torch

from opflow.data.grid import Grid
from opflow.data.normalizer import Normalizer
from opflow.errors import ConfigError
from opflow.models import build_model
from opflow.models.registry import model_arguments
from opflow.run import checkpoint

__all__ = [
    "PhysicalTaskModel",
    "Task",
    "TaskModel",
    "TrainedModel",
    "build_task_model",
    "load_trained",
]


@dataclasses.dataclass
class Task:
    """What the model maps: ``t_in`` steps of ``input_variables`` to ``t_out`` steps of outputs.

    With ``rollout`` the model predicts one step and is applied ``t_out`` times, feeding its
    output back (inputs and outputs are then the same variables). ``static_variables``: fields
    without time appended to the inputs (one channel each), the same at every step.
    """

    input_variables: list[str]
    output_variables: list[str]
    t_in: int = 1
    t_out: int = 1
    rollout: bool = False
    sample_dim: str | None = "sample"
    time_dim: str | None = "time"
    static_variables: list[str] = dataclasses.field(default_factory=list)

    @property
    def history_channels(self) -> int:
        """Channels of the time-dependent inputs: ``t_in`` steps of each input variable."""
        return len(self.input_variables) * self.t_in

    @property
    def in_channels(self) -> int:
        return self.history_channels + len(self.static_variables)

    @property
    def model_out_channels(self) -> int:
        return len(self.output_variables) * (1 if self.rollout else self.t_out)


class TaskModel(torch.nn.Module):
    """A model applied to its task, on normalised tensors: ``(B, in_channels, *s)`` ->
    ``(B, n_out * steps, *s)`` (``steps`` defaults to ``task.t_out``).

    A rollout task applies the model ``steps`` times, each step's output replacing the oldest
    input step. One module call for the whole rollout, so data-parallel training wraps this
    module (one forward per backward, as DistributedDataParallel requires).
    """

    def __init__(self, model: torch.nn.Module, task: Task):
        super().__init__()
        self.model = model
        self.task = task

    def forward(
        self, x: torch.Tensor, steps: int | None = None, previous: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``previous``: a staged model's frozen stages' prediction (one-step tasks only)."""
        task = self.task
        steps = task.t_out if steps is None else steps
        if not task.rollout:  # under autocast the output may be half: back in x's dtype
            if previous is not None:
                return self.model(x, previous=previous).to(x.dtype)
            return self.model(x).to(x.dtype)
        n_vars, t_in = len(task.input_variables), task.t_in
        history, static = x.split([task.history_channels, len(task.static_variables)], dim=1)
        outputs = []
        for _ in range(steps):
            step = self.model(torch.cat((history, static), dim=1))  # (B, n_vars, *s)
            outputs.append(step)
            history = history.unflatten(1, (n_vars, t_in))
            history = torch.cat((history[:, :, 1:], step.unsqueeze(2).to(x.dtype)), dim=2)
            history = history.flatten(1, 2)
        # (steps, B, n_vars, *s) -> variable-major channels (B, n_vars * steps, *s)
        return torch.stack(outputs, dim=2).flatten(1, 2).to(x.dtype)


class PhysicalTaskModel(torch.nn.Module):
    """A :class:`TaskModel` between its normaliser's encode and decode: physical
    ``(B, in_channels, *s)`` -> physical ``(B, n_out * steps, *s)``.

    What :class:`opflow.Surrogate` runs and what ``opflow export`` traces, so an exported
    graph computes exactly what the Python surrogate does.
    """

    def __init__(self, task_model: TaskModel, normalizer: Normalizer):
        super().__init__()
        self.task_model = task_model
        self.normalizer = normalizer

    def forward(self, x: torch.Tensor, steps: int | None = None) -> torch.Tensor:
        task = self.task_model.task
        steps = task.t_out if steps is None else steps
        z = self.normalizer.encode(x, task.input_variables, task.t_in, task.static_variables)
        return self.normalizer.decode(self.task_model(z, steps), task.output_variables, steps)


def build_task_model(
    name: str, args: dict, task: Task, grid: Sequence[int] | None = None
) -> torch.nn.Module:
    """The registered model ``name`` with ``args``, its channels filled in from ``task``.

    ``grid``: the training grid's sizes. A model with local stencils on a periodic grid
    (LocalNO's ``local_grid``) gets it where ``args`` do not say otherwise, so that on any
    other grid its local branches compute what they computed in training (resolution
    consistent; ``local_grid: null`` rebuilds the stencils for each grid's spacing instead, the
    paper's convergent kernels, which lost 2.5x accuracy at 2x the grid: RESULTS.md, #6).

    Raises :class:`ConfigError` when ``args`` name channels the task does not have.
    """
    args = dict(args)
    for key, value in (
        ("in_channels", task.in_channels),
        ("out_channels", task.model_out_channels),
    ):
        if args.setdefault(key, value) != value:
            raise ConfigError(
                f"model.args.{key}={args[key]} does not match the data ({value})",
                f"{key} = {value} for these variables and time windows",
                f"remove model.args.{key} to have it set from the data",
            )
    periodic = args.get("boundary", "periodic") == "periodic"
    if grid is not None and periodic and "local_grid" in model_arguments(name):
        args.setdefault("local_grid", [int(n) for n in grid])
    return build_model(name, **args)


@dataclasses.dataclass
class TrainedModel:
    """A run's model with weights loaded, and the rest of its spec."""

    model: torch.nn.Module
    normalizer: Normalizer
    task: Task
    grid: Grid
    meta: dict  # the checkpoint's metadata (config, epoch, validation error, ...)


def load_trained(
    run_dir: str | Path,
    tag: str = "best",
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> TrainedModel:
    """Rebuild the model of checkpoint ``tag`` of ``run_dir`` on ``device`` in ``dtype``."""
    tensors, meta = checkpoint.load_checkpoint(Path(run_dir), tag)
    model_spec, task = meta["config"]["model"], Task(**meta["task"])
    grid = Grid(**meta["grid"])
    model = build_task_model(model_spec["name"], model_spec.get("args", {}), task, grid.sizes)
    checkpoint.restore(tensors, meta, model)
    if "active_stages" in meta:  # a staged model's best checkpoint may predate its last stage
        model.active_stages = meta["active_stages"]
    model = model.to(device=device, dtype=dtype)
    return TrainedModel(model, Normalizer.from_json(meta["normalizer"]), task, grid, meta)
