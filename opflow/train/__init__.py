"""Training: config schema, losses, checkpoints, the trainer."""

from opflow.train.config import Config, load_config
from opflow.train.trainer import train

__all__ = ["Config", "load_config", "train"]
