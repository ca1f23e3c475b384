"""Neural operators, one file each, registered by name for config training."""

from opflow.models.fno import FNO, FNOBlock
from opflow.models.local_no import LocalNO
from opflow.models.mgno import MgNO
from opflow.models.registry import build_model, model_name, register, registered_models
from opflow.models.specboost import SpecBoost
from opflow.models.spherical import SFNO, SphericalCNN

__all__ = [
    "FNO",
    "FNOBlock",
    "LocalNO",
    "MgNO",
    "SFNO",
    "SpecBoost",
    "SphericalCNN",
    "build_model",
    "model_name",
    "register",
    "registered_models",
]
