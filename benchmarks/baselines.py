"""Baselines behind opflow's model interface, so benchmarks train them with opflow's trainer.

Registering them here (not in the package) keeps baselines out of ``opflow.models``; a run
trained with one is loaded by a script that imports this module first.
"""

from __future__ import annotations

from torch import nn

from opflow.models import register

__all__ = ["NeuralopFNO", "NeuralopLocalNO"]


@register("neuralop.FNO")
class NeuralopFNO(nn.Module):
    """neuraloperator 2.0's FNO with its defaults (grid embedding, soft-gating skips)."""

    def __init__(self, n_modes, in_channels, out_channels, hidden_channels, n_layers=4):
        super().__init__()
        from neuralop.models import FNO

        self.n_modes = tuple(n_modes)
        self.net = FNO(
            n_modes=tuple(n_modes),
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=hidden_channels,
            n_layers=n_layers,
        )

    def forward(self, x):
        return self.net(x)


def _import_neuralop_local_no():
    """neuraloperator 2.0's ``LocalNO``, importable with torch-harmonics 0.9.3.

    Its DISCO module imports two names that torch-harmonics 0.9.3 renamed or dropped:
    ``quadrature._precompute_grid`` (now ``_precompute_quadrature_weights``, tensors instead
    of arrays, the ``equidistant`` grid now ``equiangular-trapezoidal``) and
    ``filter_basis.MorletFilterBasis``. Neither is used by the equidistant 2-D DISCO that
    ``LocalNO`` builds (piecewise-linear basis); the shim only lets the module import.
    """
    import torch_harmonics.filter_basis as filter_basis
    import torch_harmonics.quadrature as quadrature

    if not hasattr(quadrature, "_precompute_grid"):

        def _precompute_grid(n, grid="equidistant", a=0.0, b=1.0, periodic=False):
            name = {"equidistant": "equiangular-trapezoidal"}.get(grid, grid)
            nodes, weights = quadrature._precompute_quadrature_weights(
                n, grid=name, a=a, b=b, periodic=periodic
            )
            return nodes.numpy(), weights.numpy()

        quadrature._precompute_grid = _precompute_grid
    if not hasattr(filter_basis, "MorletFilterBasis"):
        filter_basis.MorletFilterBasis = filter_basis.HarmonicFilterBasis  # unused by LocalNO
    from neuralop.models.local_no import LocalNO

    return LocalNO


@register("neuralop.LocalNO")
class NeuralopLocalNO(nn.Module):
    """neuraloperator 2.0's LocalNO (differential + equidistant DISCO branches).

    ``disco_radius`` is in units of the unit square (neuraloperator's ``radius_cutoff`` with
    ``domain_length=[1, 1]``); ``train_shape`` is its ``default_in_shape``, the grid its DISCO
    kernel and finite-difference scaling are built for.
    """

    def __init__(
        self,
        n_modes,
        in_channels,
        out_channels,
        hidden_channels,
        n_layers=4,
        train_shape=(64, 64),
        disco_radius=0.0625,
        use_channel_mlp=True,
        disco_layers=True,
    ):
        super().__init__()
        local_no = _import_neuralop_local_no()
        self.n_modes = tuple(n_modes)
        self.net = local_no(
            n_modes=tuple(n_modes),
            in_channels=in_channels,
            out_channels=out_channels,
            hidden_channels=hidden_channels,
            n_layers=n_layers,
            default_in_shape=tuple(train_shape),
            domain_length=[1.0, 1.0],
            radius_cutoff=disco_radius,
            use_channel_mlp=use_channel_mlp,
            disco_layers=disco_layers,
        )

    def forward(self, x):
        return self.net(x)


def real_parameter_count(model: nn.Module) -> int:
    """Parameters counted as real numbers: a complex weight counts twice."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
