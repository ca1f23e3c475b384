"""The training config: a typed schema for ``opflow train CONFIG.yaml``.

Every section is a dataclass; unknown keys are errors with a suggestion (see
:mod:`opflow.schema`). Example: ``configs/quickstart.yaml``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

from opflow.data.dataset import DataConfig
from opflow.errors import ConfigError
from opflow.run.execution import Precision
from opflow.schema import apply_overrides, from_dict, load_yaml

__all__ = [
    "ModelConfig",
    "LossConfig",
    "OptimizerConfig",
    "SchedulerConfig",
    "TrainingConfig",
    "Config",
    "load_config",
]


@dataclasses.dataclass
class ModelConfig:
    """A registered model (``opflow.models.registered_models()``) and its arguments.

    ``in_channels`` and ``out_channels`` are filled in from the data when not given.
    """

    name: str
    args: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LossConfig:
    """``relative_lp``: mean over samples of ||e||_p / ||y||_p; ``h1``: the same in the H1 norm
    (derivatives by FFT when ``data.periodic``, else by finite differences; see
    :mod:`opflow.train.losses`). With several output variables, each variable's error is
    taken on its own and the errors averaged (:func:`opflow.norms.per_variable`).
    ``lat_weighted_mse`` (fields on ``lat``/``lon``): WeatherBench 2's squared error weighted
    by cell area, each variable in units of its standard deviation."""

    kind: Literal["relative_lp", "h1", "lat_weighted_mse"] = "relative_lp"
    p: int = 2


@dataclasses.dataclass
class OptimizerConfig:
    name: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 1e-4


@dataclasses.dataclass
class SchedulerConfig:
    """Learning-rate schedule as a function of the step (stateless, so resume is exact).

    ``constant``; ``cosine`` (to ``min_lr_ratio * lr``); ``step`` (multiply by ``gamma`` every
    ``step_epochs``); ``onecycle`` (linear warm-up for ``warmup_fraction``, then cosine).
    """

    name: Literal["constant", "cosine", "step", "onecycle"] = "cosine"
    min_lr_ratio: float = 0.0
    gamma: float = 0.5
    step_epochs: int = 100
    warmup_fraction: float = 0.1


@dataclasses.dataclass
class TrainingConfig:
    """How to train.

    ``batch_size`` is the global batch: with N processes (``torchrun``), each takes its share
    of every batch, and the run reaches the weights one process would. ``device``: ``auto``
    (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N`` (with several processes on CUDA,
    each takes the GPU of its local rank). ``precision``: see :mod:`opflow.run.execution`.
    ``workers``: processes that read batches ahead of training (``None``: for data read
    lazily from disk, 2 on a GPU or where the CPU has cores beyond torch's threads; else 0).
    ``compile``: ``torch.compile`` the model.
    ``collective_timeout_s``: how long a process of a multi-process run waits for the others
    before it fails with an error (a dead or hung peer).
    ``tracker``: also report every epoch to TensorBoard, Weights & Biases or MLflow
    (:mod:`opflow.train.trackers`).
    ``init_from``: start from the weights (and normaliser) of another run's best checkpoint
    instead of random ones — e.g. fine-tune a one-step model on multi-step rollouts
    (``rollout: true``, ``data.t_out: 4``), as weather models are trained.
    ``retain_cpu_memory``: on the CPU, keep freed memory in the process for the next step's
    tensors instead of returning it to the system (:func:`opflow.run.execution.
    retain_freed_cpu_memory`; 1.7x faster LocalNO steps at 128²).
    ``spatial_parallel``: processes that share each field (domain parallelism,
    :mod:`opflow.models.sharded`): ``P`` consecutive ranks split every sample's first spatial
    axis, and the ``world / P`` groups of them split the batches (data parallelism).
    """

    epochs: int = 10
    batch_size: int = 16
    seed: int = 0
    rollout: bool = False
    threads: int | None = None
    checkpoint_every: int = 1
    output_dir: str = "runs/run"
    tracker: Literal["tensorboard", "wandb", "mlflow"] | None = None
    device: str = "auto"
    precision: Precision = "fp32"
    compile: bool = False
    workers: int | None = None
    collective_timeout_s: float = 300.0
    spatial_parallel: int = 1
    init_from: str | None = None
    retain_cpu_memory: bool = True

    def validate(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.checkpoint_every < 1:
            raise ConfigError(
                f"training.epochs={self.epochs}, batch_size={self.batch_size}, "
                f"checkpoint_every={self.checkpoint_every}",
                "positive integers",
                "fix the training section",
            )
        if self.spatial_parallel < 1:
            raise ConfigError(
                f"training.spatial_parallel={self.spatial_parallel}",
                "a positive number of processes per field",
                "use 1 (each process holds whole fields) or more",
            )
        if (self.workers is not None and self.workers < 0) or self.collective_timeout_s <= 0:
            raise ConfigError(
                f"training.workers={self.workers}, "
                f"collective_timeout_s={self.collective_timeout_s}",
                "workers >= 0 (or null) and a positive timeout",
                "fix the training section",
            )


@dataclasses.dataclass
class Config:
    data: DataConfig
    model: ModelConfig
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = dataclasses.field(default_factory=SchedulerConfig)
    training: TrainingConfig = dataclasses.field(default_factory=TrainingConfig)


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override (``key.path=value``) and validate a training config."""
    data = apply_overrides(load_yaml(path), overrides or [])
    return from_dict(Config, data, where="config")


def config_from_dict(data: dict) -> Config:
    return from_dict(Config, data, where="config")
