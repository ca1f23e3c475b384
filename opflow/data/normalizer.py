"""Per-variable scalar normalisation, fitted on the training split only.

One mean and one standard deviation per variable (not per grid point), so the normaliser is
the same at every resolution. Channels are variable-major stacks of time steps, then static
fields, as produced by :class:`opflow.data.windows.WindowDataset`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

__all__ = ["Normalizer"]


@dataclasses.dataclass
class Normalizer:
    mean: dict[str, float]
    std: dict[str, float]

    @classmethod
    def fit(cls, data, split: str, variables: list[str]) -> Normalizer:
        """Mean/std of each variable over ``split``'s part of ``data`` (a FieldData: its
        samples, or its block of a time series)."""
        mean, std = {}, {}
        for var in variables:
            values = data.split_values(var, split)
            m = float(values.mean().values)
            s = float(values.std().values)
            mean[var], std[var] = m, s if s > 0 else 1.0
        return cls(mean, std)

    def _stats(self, variables: list[str], steps: int, like: torch.Tensor, static=()):
        channels = [v for v in variables for _ in range(steps)] + list(static)
        shape = (1, len(channels)) + (1,) * (like.ndim - 2)
        m = torch.tensor([self.mean[v] for v in channels], dtype=like.dtype)
        s = torch.tensor([self.std[v] for v in channels], dtype=like.dtype)
        return m.view(shape).to(like.device), s.view(shape).to(like.device)

    def encode(
        self, x: torch.Tensor, variables: list[str], steps: int, static: Sequence[str] = ()
    ) -> torch.Tensor:
        """Physical -> normalised; ``x`` is ``(B, len(variables) * steps + len(static),
        *spatial)``: ``steps`` channels per variable, then one per static field."""
        m, s = self._stats(variables, steps, x, static)
        return (x - m) / s

    def decode(
        self, x: torch.Tensor, variables: list[str], steps: int, static: Sequence[str] = ()
    ) -> torch.Tensor:
        """Normalised -> physical (the inverse of :meth:`encode`)."""
        m, s = self._stats(variables, steps, x, static)
        return x * s + m

    def to_json(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_json(cls, data: dict) -> Normalizer:
        return cls(dict(data["mean"]), dict(data["std"]))
