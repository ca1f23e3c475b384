"""Evaluation: metrics, super-resolution evaluation of trained runs, plots."""

from opflow.evaluate.evaluate import ResolutionResult, evaluate_run, format_table
from opflow.evaluate.metrics import error_spectrum, relative_l2_per_sample

__all__ = [
    "ResolutionResult",
    "error_spectrum",
    "evaluate_run",
    "format_table",
    "relative_l2_per_sample",
]
