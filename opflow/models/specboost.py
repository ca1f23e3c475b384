"""SpecBoost (Qin et al., 2024): an ensemble whose later stages learn earlier stages' residual.

    prediction = stage_1(x) + stage_2(x [, stage_1(x)]) + ... + stage_S(...)

Stage ``s`` is trained with the stages before it frozen, on the loss of the running sum, which
is training it on the residual ``y - (stage_1 + ... + stage_{s-1})(x)``. FNO's low-frequency
bias leaves most of that residual at high wavenumbers, which the next stage then targets; give
it the modes to reach them (an FNO stage 2 with more modes than stage 1: ``configs/
ns_specboost.yaml``, measured in ``docs/architecture.md``).
Any registered model can be a stage. The trainer runs the stages in turn (``training.epochs``
split evenly) through :meth:`SpecBoost.set_stage`; the model itself knows nothing of training.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from opflow.errors import ConfigError
from opflow.models.protocols import kept_modes
from opflow.models.registry import build_model, register

__all__ = ["SpecBoost"]


@register("SpecBoost")
class SpecBoost(nn.Module):
    """Sum of stage models ``(B, in_channels, *s) -> (B, out_channels, *s)``.

    Parameters
    ----------
    stages:
        ``[{"name": "FNO", "args": {...}}, ...]``: registered models and their arguments
        (``in_channels``/``out_channels`` are filled in).
    in_channels, out_channels:
        Channels of the data.
    feed_prediction:
        Stages after the first also see the running prediction as extra input channels.

    Stage ``s`` enters the sum scaled by ``stage_scale[s]`` (a buffer, 1 by default): the
    trainer sets it to the RMS of the earlier stages' residual when stage ``s`` begins
    (:meth:`set_residual_scale`), so that the stage learns a unit-scale target, the
    residual normalisation of Qin et al. Unscaled, a stage's Adam steps (about the learning
    rate per weight) move its output by more than the residual it should fit (~5% of the
    target on the quickstart's data), and it does not learn.
    """

    def __init__(
        self,
        stages: list[dict],
        in_channels: int,
        out_channels: int,
        feed_prediction: bool = False,
    ):
        super().__init__()
        if len(stages) < 1 or not all(isinstance(s, dict) and "name" in s for s in stages):
            raise ConfigError(
                f"SpecBoost stages={stages!r}",
                "a list of {name: MODEL, args: {...}} entries",
                "e.g. stages: [{name: FNO, args: {n_modes: [12, 12], hidden_channels: 24}}] * 2",
            )
        self.in_channels, self.out_channels = in_channels, out_channels
        self.feed_prediction = feed_prediction
        self.stages = nn.ModuleList()
        for index, spec in enumerate(stages):
            unknown = set(spec) - {"name", "args"}
            if unknown:
                raise ConfigError(
                    f"SpecBoost stage {index} has unknown keys {sorted(unknown)}",
                    "name and args",
                    "move model arguments under args",
                )
            extra = out_channels if feed_prediction and index > 0 else 0
            args = dict(spec.get("args") or {}) | {
                "in_channels": in_channels + extra,
                "out_channels": out_channels,
            }
            self.stages.append(build_model(spec["name"], **args))
        self.n_stages = len(self.stages)
        self.active_stages = self.n_stages
        self.register_buffer("stage_scale", torch.ones(self.n_stages))

    def kept_modes(self) -> tuple[int, ...]:
        """The most modes any stage keeps on each axis (the grid must carry them all)."""
        modes = [m for m in (kept_modes(stage) for stage in self.stages) if m is not None]
        return tuple(max(axis) for axis in zip(*modes)) if modes else ()

    def set_stage(self, stage: int) -> None:
        """Train stage ``stage`` (0-based): it and the stages before it run, only it learns."""
        if not 0 <= stage < self.n_stages:
            raise ConfigError(f"stage {stage}", f"0 .. {self.n_stages - 1}", "check the stage")
        self.active_stages = stage + 1
        for index, module in enumerate(self.stages):
            module.requires_grad_(index == stage)

    def set_residual_scale(self, stage: int, scale: float) -> None:
        """Scale stage ``stage``'s output by ``scale`` (the RMS of the residual it learns)."""
        if not 0 < stage < self.n_stages or not scale > 0:
            raise ConfigError(
                f"residual scale {scale} for stage {stage}",
                f"a stage in 1 .. {self.n_stages - 1} and a positive scale",
                "the first stage learns the target itself",
            )
        self.stage_scale[stage] = scale

    def forward(
        self,
        x: torch.Tensor,
        output_shape: Sequence[int] | None = None,
        previous: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The sum of the active stages. ``previous``: the sum of all active stages but the
        last, when the caller has it (a trainer caches the frozen stages' prediction): only
        the last stage then runs."""
        kwargs = {} if output_shape is None else {"output_shape": output_shape}
        if output_shape is not None and self.feed_prediction:
            raise ConfigError(
                "SpecBoost(feed_prediction=True) with output_shape",
                "the prediction on the input grid, to feed it to the next stage",
                "evaluate on the target grid's data instead of passing output_shape",
            )
        if previous is None:
            prediction, first = self.stages[0](x, **kwargs), 1
        else:
            prediction, first = previous.to(x.dtype), self.active_stages - 1
        for index in range(first, self.active_stages):
            inputs = torch.cat((x, prediction), dim=1) if self.feed_prediction else x
            prediction = prediction + self.stage_scale[index] * self.stages[index](inputs, **kwargs)
        return prediction
