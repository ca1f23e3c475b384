"""The one exception hierarchy of opflow.

Every error a user can cause (bad input shapes, bad data files, bad configs, bad checkpoints)
is raised as a subclass of :class:`OpflowError`, with a message that says what was wrong,
what was expected, and how to fix it. Catching ``OpflowError`` catches all of them; the CLI
prints the message instead of a traceback.
"""

from __future__ import annotations

__all__ = [
    "OpflowError",
    "ShapeError",
    "ResolutionError",
    "DataError",
    "ConfigError",
    "CheckpointError",
    "BackendError",
    "ExportError",
]


class OpflowError(Exception):
    """Base class of every error opflow raises on bad user input."""

    def __init__(self, what: str, expected: str | None = None, fix: str | None = None):
        self.what = what
        self.expected = expected
        self.fix = fix
        parts = [what]
        if expected:
            parts.append(f"Expected: {expected}.")
        if fix:
            parts.append(f"Fix: {fix}.")
        super().__init__(" ".join(parts))


class ShapeError(OpflowError, ValueError):
    """A tensor has the wrong number of dimensions or channels."""


class ResolutionError(ShapeError):
    """A grid has too few points along an axis for the spectral modes a model keeps."""


class DataError(OpflowError, ValueError):
    """A data set is unusable: missing variable, NaN/Inf, non-uniform axis, wrong dims."""


class ConfigError(OpflowError, ValueError):
    """A configuration file or value does not match the schema."""


class CheckpointError(OpflowError, OSError):
    """A run directory or checkpoint is missing, truncated or corrupt."""


class BackendError(OpflowError, RuntimeError):
    """A compute backend was asked for where it cannot run."""


class ExportError(OpflowError, RuntimeError):
    """A trained model could not be written as a self-contained graph (ONNX, torch.export)."""
