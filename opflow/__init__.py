"""opflow: resolution-invariant neural operators for PDEs on one spectral core."""

__version__ = "0.1.0"

from opflow.export import export_run  # noqa: E402
from opflow.surrogate import Surrogate, load  # noqa: E402

__all__ = ["Surrogate", "__version__", "export_run", "load"]
