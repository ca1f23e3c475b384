"""Evaluation: metrics, super-resolution evaluation of trained runs, plots."""

from opflow.evaluate.evaluate import ResolutionResult, evaluate_run, format_table
from opflow.evaluate.metrics import relative_l2_per_sample, spectral_error

__all__ = [
    "ResolutionResult",
    "evaluate_run",
    "format_table",
    "relative_l2_per_sample",
    "spectral_error",
]
