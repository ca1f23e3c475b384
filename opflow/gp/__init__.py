"""GP-HM: Gaussian-process solvers for high-frequency and multi-scale PDEs (Fang et al. 2024).

* :mod:`opflow.gp.kernels` — spectral mixture kernels on one axis and their derivatives;
* :mod:`opflow.gp.kronecker` — per-axis factorizations of a product kernel on a grid;
* :mod:`opflow.gp.pde` — the PDE specification (terms, source, boundary data);
* :mod:`opflow.gp.model` — the GP state on a collocation grid (values, kernels, precisions);
* :mod:`opflow.gp.solver` — the solver and its result (xarray + ``predict`` anywhere);
* :mod:`opflow.gp.run` — config files in, result files and plots out (``opflow gp-solve``).
"""

from opflow.gp.kernels import SpectralMixtureKernel
from opflow.gp.kronecker import AxisFactor, KroneckerGram, UniformAxis
from opflow.gp.model import GridGP, KernelConfig
from opflow.gp.pde import PDEProblem, Term, make_problem
from opflow.gp.solver import GPSolution, SolverOptions, solve

__all__ = [
    "AxisFactor",
    "GPSolution",
    "GridGP",
    "KernelConfig",
    "KroneckerGram",
    "PDEProblem",
    "SolverOptions",
    "SpectralMixtureKernel",
    "Term",
    "UniformAxis",
    "make_problem",
    "solve",
]
