"""Neural operators, one file each, registered by name for config training."""

from opflow.models.fno import FNO, FNOBlock
from opflow.models.mgno import MgNO
from opflow.models.registry import build_model, model_name, register, registered_models

__all__ = ["FNO", "FNOBlock", "MgNO", "build_model", "model_name", "register", "registered_models"]
