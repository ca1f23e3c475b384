"""Numerical PDE solvers: data generation and coupling with surrogates."""
