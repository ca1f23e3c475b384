"""Experiment trackers a training run can report its epochs to (``training.tracker``).

``metrics.jsonl`` and ``train.log`` in the run directory are always written; a tracker adds a
view many users already have open: ``tensorboard`` (event files in ``RUN/tensorboard``),
``wandb`` (Weights & Biases; ``WANDB_MODE=offline`` keeps it on disk, in ``RUN/wandb``) or
``mlflow`` (a local store in ``RUN/mlruns`` unless ``MLFLOW_TRACKING_URI`` points elsewhere).
Each is an optional package (``pip install "opflow[trackers]"``); asking for a missing one is a
one-line error before training starts. Only rank 0 of a multi-process run reports.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Protocol

from opflow.errors import ConfigError

__all__ = ["TRACKERS", "Tracker", "open_tracker"]

TrackerName = Literal["tensorboard", "wandb", "mlflow"]
TRACKERS = ("tensorboard", "wandb", "mlflow")
_SCALARS = ("train_loss", "val_rel_l2", "lr", "seconds")


class Tracker(Protocol):
    def log(self, row: dict) -> None:
        """Report one epoch's row of ``metrics.jsonl`` (its ``epoch`` is the step)."""
        ...

    def close(self) -> None: ...


def _missing(name: str, package: str) -> ConfigError:
    return ConfigError(
        f"training.tracker is {name!r} but {package} is not installed",
        f"the {package} package",
        f'pip install {package} (or "opflow[trackers]"), or remove training.tracker',
    )


class _TensorBoard:
    def __init__(self, run_dir: Path, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise _missing("tensorboard", "tensorboard") from None
        self.writer = SummaryWriter(run_dir / "tensorboard")

    def log(self, row: dict) -> None:
        for key in _SCALARS:
            self.writer.add_scalar(key, row[key], row["epoch"])

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, run_dir: Path, config: dict):
        try:
            import wandb
        except ImportError:
            raise _missing("wandb", "wandb") from None
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "opflow"),
            name=run_dir.name,
            dir=str(run_dir),
            config=config,
            resume="allow",
            id=os.environ.get("WANDB_RUN_ID"),
        )

    def log(self, row: dict) -> None:
        self.run.log({key: row[key] for key in _SCALARS}, step=row["epoch"])

    def close(self) -> None:
        self.run.finish()


class _MLflow:
    def __init__(self, run_dir: Path, config: dict):
        try:
            import mlflow
        except ImportError:
            raise _missing("mlflow", "mlflow") from None
        if "MLFLOW_TRACKING_URI" not in os.environ:
            mlflow.set_tracking_uri((run_dir / "mlruns").absolute().as_uri())
        self.mlflow = mlflow
        self.run = mlflow.start_run(run_name=run_dir.name)
        flat = {f"{section}.{key}": value for section, values in config.items()
                if isinstance(values, dict) for key, value in values.items()}  # fmt: skip
        mlflow.log_params({k: str(v)[:500] for k, v in flat.items()})

    def log(self, row: dict) -> None:
        self.mlflow.log_metrics({key: row[key] for key in _SCALARS}, step=row["epoch"])

    def close(self) -> None:
        self.mlflow.end_run()


def open_tracker(name: TrackerName | None, run_dir: Path, config: dict) -> Tracker | None:
    """The tracker called ``name`` for the run in ``run_dir`` (``None``: no tracker);
    ``config`` is the run's resolved configuration, recorded with it."""
    if name is None:
        return None
    kinds = {"tensorboard": _TensorBoard, "wandb": _Wandb, "mlflow": _MLflow}
    return kinds[name](Path(run_dir), config)
