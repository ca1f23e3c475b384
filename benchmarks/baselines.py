"""Baselines behind opflow's model interface, so benchmarks train them with opflow's trainer.

Registering them here (not in the package) keeps baselines out of ``opflow.models``; a run
trained with one is loaded by a script that imports this module first.
"""

from __future__ import annotations

from torch import nn

from opflow.models import register

__all__ = ["NeuralopFNO"]


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


def real_parameter_count(model: nn.Module) -> int:
    """Parameters counted as real numbers: a complex weight counts twice."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
