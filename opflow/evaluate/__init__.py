"""Evaluation: metrics, super-resolution evaluation of trained runs, plots."""

from opflow.evaluate.evaluate import ResolutionResult, evaluate_run, format_table
from opflow.evaluate.metrics import spectral_error

__all__ = [
    "ResolutionResult",
    "evaluate_run",
    "format_table",
    "spectral_error",
]
