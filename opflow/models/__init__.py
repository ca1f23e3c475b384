"""Neural operators, one file each, registered by name for config training."""

from opflow.models.fno import FNO, FNOBlock
from opflow.models.registry import build_model, model_name, register, registered_models

__all__ = ["FNO", "FNOBlock", "build_model", "model_name", "register", "registered_models"]
