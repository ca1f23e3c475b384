"""Staged models (SpecBoost) in training: each later stage learns the normalised residual
of the frozen stages before it, scaled to unit RMS."""

from __future__ import annotations

import logging
import math

import torch

from opflow.surrogate import Surrogate

__all__ = ["FrozenPrediction", "begin_stage", "residual_loss"]

log = logging.getLogger(__name__)


class FrozenPrediction:
    """The frozen earlier stages' normalised prediction for every training pair, computed
    once when a stage begins (or resumes): those stages do not change while it trains, and
    running them forward on every batch — twice, for the sum and for the residual target —
    made a stage-2 epoch cost ~1.7x an epoch of the stage alone.

    Every process computes all pairs (its share of a batch changes with the shuffle); the
    values live on the CPU, ``(C, *s)`` per training item, and ``batch(items)`` hands a
    batch's on the run's device."""

    def __init__(self, surrogate: Surrogate, train_set, batch_size: int, ctx):
        model, task, normalizer = surrogate.model, surrogate.task, surrogate.normalizer
        active, model.active_stages = model.active_stages, model.active_stages - 1
        self.execution = ctx.execution
        self.values: dict[int, torch.Tensor] = {}
        self._residual_squares = [0.0, 0]  # sum and count of (target - prediction)²
        batches = train_set.batches(batch_size)
        model.eval()
        try:
            with torch.no_grad(), ctx.execution.autocast():
                for items, (x, y) in zip(batches, ctx.loader(train_set, batches)):
                    z = normalizer.encode(x, task.input_variables, task.t_in, task.static_variables)
                    previous = surrogate.forward_normalized(z)
                    target = normalizer.encode(y, task.output_variables, task.t_out)
                    residual = (previous - target).double()
                    self._residual_squares[0] += residual.square().sum().item()
                    self._residual_squares[1] += residual.numel()
                    if task.rollout:  # a rollout's later steps depend on the training stage
                        continue
                    for item, value in zip(items.tolist(), previous.float().cpu()):
                        self.values[item] = value
        finally:
            model.active_stages = active

    @property
    def residual_rms(self) -> float:
        """RMS of ``target - frozen prediction`` over the training split (normalised units)."""
        total, count = self._residual_squares
        return math.sqrt(total / max(count, 1))

    def batch(self, items: torch.Tensor) -> torch.Tensor:
        """The frozen prediction of ``items``, ``(B, C, *s)`` on the run's device."""
        return self.execution.to(torch.stack([self.values[int(i)] for i in items]))


def begin_stage(
    surrogate: Surrogate, stage: int, train_set, batch_size: int, ctx, rescale: bool = True
) -> FrozenPrediction | None:
    """Prepare stage ``stage`` of a staged model: its predecessors' prediction on the training
    split, once (``None`` for rollout tasks, whose later steps depend on the training stage),
    and with ``rescale`` the stage's scale, the RMS of their normalised residual there (the
    residual normalisation of SpecBoost)."""
    model = surrogate.model
    frozen = FrozenPrediction(surrogate, train_set, batch_size, ctx)
    if rescale:
        model.set_residual_scale(stage, frozen.residual_rms)
        if ctx.group.is_main:
            log.info(
                "stage %d: learns a residual of RMS %.4g (normalised units)",
                stage + 1,
                frozen.residual_rms,
            )
    return None if surrogate.task.rollout else frozen


def residual_loss(surrogate: Surrogate, loss_fn, z, pred, y, previous=None) -> torch.Tensor:
    """The loss of a later stage on the residual it learns: ``loss(pred - prev, y - prev)``
    with ``prev`` the frozen earlier stages' prediction (SpecBoost's per-stage target):
    ``previous`` (normalised), or computed here.

    For relative losses this divides by the residual's norm instead of the target's: on the
    total's relative error a stage that corrects a 9% residual sees gradients ~10x smaller
    than its first stage did, Adam's coupled weight decay outweighs them, and the stage decays
    to a zero output without learning (measured on NS 1e-4: stage 2's output RMS 0.003, its
    correlation with the residual 0.03).
    """
    model, task = surrogate.model, surrogate.task
    if previous is None:  # not cached (rollout tasks): the frozen stages run again
        active = model.active_stages
        with torch.no_grad():
            model.active_stages = active - 1
            previous = surrogate.forward_normalized(z)
            model.active_stages = active
    prev = surrogate.normalizer.decode(previous, task.output_variables, task.t_out)
    return loss_fn(pred - prev, y - prev)
