"""``fft`` backend: the torch.fft reference (rfftn, keep the kept modes, irfftn).

It computes exactly the same maps as the ``gemm`` backend (see :mod:`opflow.spectral.fourier`
for the conventions) and is what every other backend is tested against. Its spectra use the
core's canonical layout ``(M_total, B, 2*C)``.
"""

from __future__ import annotations

import math

import torch

from opflow.spectral.fourier import kept_frequencies

__all__ = ["analyze", "synthesize"]


def _index(freqs: list[int], n: int, device: torch.device) -> torch.Tensor:
    return torch.tensor([k % n for k in freqs], dtype=torch.long, device=device)


def analyze(x: torch.Tensor, n_modes: tuple[int, ...]) -> torch.Tensor:
    """Kept spectrum of real ``x`` ``(B, C, *s)`` in canonical layout ``(M_total, B, 2C)``."""
    d = len(n_modes)
    b, c, *spatial = x.shape
    dims = tuple(range(2, 2 + d))
    spec = torch.fft.rfftn(x, dim=dims, norm="forward")
    spec = spec[..., : n_modes[-1] // 2 + 1]
    for axis in range(d - 1):
        freqs = kept_frequencies(n_modes[axis], half=False)
        spec = spec.index_select(2 + axis, _index(freqs, spatial[axis], x.device))
    modes = spec.shape[2:]
    # (B, C, *modes) complex -> (*modes, B, 2, C) real
    spec = torch.view_as_real(spec.permute(*range(2, 2 + d), 0, 1).contiguous())
    return spec.transpose(-1, -2).reshape(math.prod(modes), b, 2 * c)


def synthesize(
    spec: torch.Tensor, n_modes: tuple[int, ...], channels: int, output_shape: tuple[int, ...]
) -> torch.Tensor:
    """Real field ``(B, channels, *output_shape)`` from a canonical spectrum."""
    d = len(n_modes)
    _, b, _ = spec.shape
    modes = tuple(n_modes[:-1]) + (n_modes[-1] // 2 + 1,)
    t = spec.view(*modes, b, 2, channels).transpose(-1, -2).contiguous()
    t = torch.view_as_complex(t).permute(d, d + 1, *range(d))  # (B, C, *modes)
    for axis in range(d - 1):
        n_out = output_shape[axis]
        freqs = kept_frequencies(n_modes[axis], half=False)
        fits = [i for i, k in enumerate(freqs) if -(n_out // 2) <= k <= (n_out - 1) // 2]
        placed = t.new_zeros(*t.shape[: 2 + axis], n_out, *t.shape[3 + axis :])
        src = t.index_select(2 + axis, torch.tensor(fits, dtype=torch.long, device=t.device))
        target = _index([freqs[i] for i in fits], n_out, t.device)
        t = placed.index_copy(2 + axis, target, src)
    n_half = output_shape[-1] // 2 + 1
    keep = min(modes[-1], n_half)
    t = torch.nn.functional.pad(t[..., :keep], (0, n_half - keep))
    return torch.fft.irfftn(t, s=tuple(output_shape), dim=tuple(range(2, 2 + d)), norm="forward")
