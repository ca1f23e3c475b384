"""Data: xarray datasets on disk, torch datasets over them, normalisers, recipes."""

from opflow.data.dataset import DataConfig, FieldData
from opflow.data.grid import Grid
from opflow.data.io import open_dataset, write_dataset
from opflow.data.normalizer import Normalizer
from opflow.data.windows import WindowDataset

__all__ = [
    "DataConfig",
    "FieldData",
    "Grid",
    "Normalizer",
    "WindowDataset",
    "open_dataset",
    "write_dataset",
]
