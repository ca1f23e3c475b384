"""Per-variable scalar normalisation, fitted on the training split only.

One mean and one standard deviation per variable (not per grid point), so the normaliser is
the same at every resolution. Channels are variable-major stacks of time steps, as produced by
:class:`opflow.data.dataset.WindowDataset`.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

__all__ = ["Normalizer"]


@dataclasses.dataclass
class Normalizer:
    mean: dict[str, float]
    std: dict[str, float]

    @classmethod
    def fit(cls, data, indices: np.ndarray, variables: list[str]) -> Normalizer:
        """Mean/std of each variable over the samples ``indices`` of ``data`` (a FieldData)."""
        mean, std = {}, {}
        sample_dim = data.config.sample_dim
        for var in variables:
            values = data.ds[var].isel({sample_dim: indices})
            m = float(values.mean().values)
            s = float(values.std().values)
            mean[var], std[var] = m, s if s > 0 else 1.0
        return cls(mean, std)

    def _stats(self, variables: list[str], steps: int, like: torch.Tensor):
        shape = (1, len(variables) * steps) + (1,) * (like.ndim - 2)
        m = torch.tensor([self.mean[v] for v in variables for _ in range(steps)], dtype=like.dtype)
        s = torch.tensor([self.std[v] for v in variables for _ in range(steps)], dtype=like.dtype)
        return m.view(shape).to(like.device), s.view(shape).to(like.device)

    def encode(self, x: torch.Tensor, variables: list[str], steps: int) -> torch.Tensor:
        """Physical -> normalised; ``x`` is ``(B, len(variables) * steps, *spatial)``."""
        m, s = self._stats(variables, steps, x)
        return (x - m) / s

    def decode(self, x: torch.Tensor, variables: list[str], steps: int) -> torch.Tensor:
        """Normalised -> physical."""
        m, s = self._stats(variables, steps, x)
        return x * s + m

    def to_json(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_json(cls, data: dict) -> Normalizer:
        return cls(dict(data["mean"]), dict(data["std"]))
