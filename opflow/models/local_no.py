"""Local neural operator (Liu-Schiaffini et al., ICML 2024): FNO blocks with local branches.

Each Fourier block becomes

    x <- σ( SpectralConv(x) + W x + DiffConv(x) + DISCO(x) )  (then the channel MLP, as in FNO)

with ``DiffConv`` a zero-sum stencil over the grid spacing (a learned directional derivative,
:class:`opflow.layers.DifferentialConv`) and ``DISCO`` a local integral kernel of fixed
physical radius (:class:`opflow.layers.disco.LocalIntegralConv`), both valid as the grid is
refined. The global spectral part and every FNO option are those of :class:`FNO`.
"""

from __future__ import annotations

from collections.abc import Sequence

from opflow.errors import ConfigError
from opflow.layers.differential import DifferentialConv
from opflow.layers.disco import LocalIntegralConv
from opflow.layers.local_branches import LocalBranches
from opflow.layers.padding import Boundary
from opflow.models.fno import FNO
from opflow.models.registry import register

__all__ = ["LocalNO"]


@register("LocalNO")
class LocalNO(FNO):
    """FNO with a differential and/or a local integral branch in every block.

    Parameters (besides :class:`FNO`'s)
    -----------------------------------
    differential_kernel : bool
        Add the differential branch (3-point stencil per axis).
    disco_radius : float or None
        Radius of the local integral branch in physical units (2-D only); ``None``: no branch.
    disco_rings, disco_angles : int
        Its piecewise-linear basis: radial nodes and angular nodes.
    boundary : "periodic", "zero" or "reflect"
        How the local branches see past the edges.
    domain_length : float
        Physical length of each axis (the grid spacing is ``domain_length / n`` when periodic).
    derivative_length : float
        The differential branch's ``length_scale`` ``ℓ`` (physical units): it computes
        ``ℓ`` times a learned derivative. Of the order of the training grid's spacing (the
        default: 1/64 of the unit domain), its stencil learns at the pace of the other
        branches; at ``ℓ = 1`` it learns ``1 / h`` times faster (see
        :class:`opflow.layers.DifferentialConv`).
    local_grid : sequence of int or None
        Periodic only: build the local stencils on this grid (the training grid) and apply
        them on other grids as a band-limited Fourier multiplier (:class:`LocalBranches`), so
        that zero-shot evaluation on a finer grid computes what training computed. ``None``:
        rebuild the stencils for every grid's spacing (the paper's convergent kernels).
        A run trained from a config gets its training grid here unless the config says
        ``local_grid: null`` (:func:`opflow.run.spec.build_task_model`).
    """

    def __init__(
        self,
        n_modes: Sequence[int],
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        n_layers: int = 4,
        differential_kernel: bool = True,
        disco_radius: float | None = 0.0625,
        disco_rings: int = 3,
        disco_angles: int = 4,
        boundary: Boundary = "periodic",
        domain_length: float = 1.0,
        derivative_length: float = 1 / 64,
        local_grid: Sequence[int] | None = None,
        **fno_args,
    ):
        n_dim = len(n_modes)
        if not differential_kernel and disco_radius is None:
            raise ConfigError(
                "LocalNO with neither local branch",
                "differential_kernel: true and/or a disco_radius",
                "use FNO for a model without local branches",
            )
        if disco_radius is not None and n_dim != 2:
            raise ConfigError(
                f"disco_radius with {n_dim}-D n_modes",
                "2-D data for the local integral branch",
                "set disco_radius: null",
            )
        c = hidden_channels
        # the periodic branches' multiplier covers every wavenumber of the grid (as large as an
        # activation per layer): built once per batch, not once per chunk (at 128², batch 16,
        # the FNO's 4 MB chunks made a step 2.6x slower)
        fno_args.setdefault("chunk_bytes", None)

        def local_branches(index: int) -> LocalBranches:
            branches = []
            if differential_kernel:
                branches.append(
                    DifferentialConv(
                        c,
                        c,
                        n_dim=n_dim,
                        boundary=boundary,
                        domain_length=domain_length,
                        length_scale=derivative_length,
                    )
                )
            if disco_radius is not None:
                branches.append(
                    LocalIntegralConv(
                        c,
                        c,
                        radius=disco_radius,
                        n_rings=disco_rings,
                        n_angles=disco_angles,
                        boundary=boundary,
                        domain_length=domain_length,
                    )
                )
            return LocalBranches(branches, reference_grid=local_grid)

        super().__init__(
            n_modes,
            in_channels,
            out_channels,
            hidden_channels,
            n_layers=n_layers,
            local_branches=local_branches,
            **fno_args,
        )
