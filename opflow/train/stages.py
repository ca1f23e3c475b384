"""Staged models (SpecBoost) in training: each later stage learns the normalised residual
of the frozen stages before it, scaled to unit RMS."""

from __future__ import annotations

import logging
import math

import torch

from opflow.surrogate import Surrogate

__all__ = ["begin_stage", "residual_loss"]

log = logging.getLogger(__name__)


def begin_stage(surrogate: Surrogate, stage: int, train_set, batch_size: int, ctx) -> None:
    """Scale stage ``stage`` of a staged model by the RMS of its predecessors' normalised
    residual on the training split (the residual normalisation of SpecBoost)."""
    model, task, normalizer = surrogate.model, surrogate.task, surrogate.normalizer
    active, model.active_stages = model.active_stages, stage
    total, count = 0.0, 0
    model.eval()
    batches = [ctx.group.shard(b) for b in train_set.batches(batch_size)]
    with torch.no_grad(), ctx.execution.autocast():
        for x, y in ctx.loader(train_set, [b for b in batches if len(b)]):
            z = normalizer.encode(x, task.input_variables, task.t_in, task.static_variables)
            target = normalizer.encode(y, task.output_variables, task.t_out)
            residual = surrogate.forward_normalized(z) - target
            total += residual.double().square().sum().item()
            count += residual.numel()
    model.active_stages = active
    total, count = ctx.group.sum([total, count], ctx.execution.device)
    scale = math.sqrt(total / max(count, 1))
    model.set_residual_scale(stage, scale)
    if ctx.group.is_main:
        log.info("stage %d: learns a residual of RMS %.4g (normalised units)", stage + 1, scale)


def residual_loss(surrogate: Surrogate, loss_fn, z, pred, y) -> torch.Tensor:
    """The loss of a later stage on the residual it learns: ``loss(pred - prev, y - prev)``
    with ``prev`` the frozen earlier stages' prediction (SpecBoost's per-stage target).

    For relative losses this divides by the residual's norm instead of the target's: on the
    total's relative error a stage that corrects a 9% residual sees gradients ~10x smaller
    than its first stage did, Adam's coupled weight decay outweighs them, and the stage decays
    to a zero output without learning (measured on NS 1e-4: stage 2's output RMS 0.003, its
    correlation with the residual 0.03).
    """
    model, task = surrogate.model, surrogate.task
    active = model.active_stages
    with torch.no_grad():
        model.active_stages = active - 1
        prev = surrogate.normalizer.decode(
            surrogate.forward_normalized(z), task.output_variables, task.t_out
        )
        model.active_stages = active
    return loss_fn(pred - prev, y - prev)
