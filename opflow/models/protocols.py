"""What a model declares to the code that runs it (trainer, evaluator, surrogate), so that code
asks the model instead of probing its attributes.

* :class:`BandLimited`: a model that keeps Fourier modes on a periodic grid; the data must
  resolve them (:func:`kept_modes`).
* :class:`Staged`: a model trained one stage after another, earlier stages frozen (SpecBoost).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

__all__ = ["BandLimited", "Staged", "kept_modes", "stage_count"]


@runtime_checkable
class BandLimited(Protocol):
    def kept_modes(self) -> tuple[int, ...]:
        """Fourier modes kept per spatial axis (neuraloperator's ``n_modes`` meaning): the
        input grid needs enough points on each axis to carry them."""
        ...


@runtime_checkable
class Staged(Protocol):
    """A sum of stages trained in turn (``n_stages`` of them, ``active_stages`` running)."""

    n_stages: int
    active_stages: int

    def set_stage(self, stage: int) -> None:
        """Train stage ``stage`` (0-based): it and the stages before it run, only it learns."""
        ...

    def set_residual_scale(self, stage: int, scale: float) -> None:
        """Scale stage ``stage``'s output by the RMS of the residual it learns."""
        ...


def kept_modes(model: nn.Module) -> tuple[int, ...] | None:
    """The Fourier modes ``model`` keeps per axis, or ``None`` if it keeps no planar band limit
    (multigrid and spherical models check their own grids)."""
    return tuple(model.kept_modes()) if isinstance(model, BandLimited) else None


def stage_count(model: nn.Module) -> int:
    """How many stages ``model`` trains in turn (1 for a model that is not :class:`Staged`)."""
    return model.n_stages if isinstance(model, Staged) else 1
