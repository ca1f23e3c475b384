"""A slow, obviously correct float64 reference for the spectral convolution.

Written from the definition, independently of opflow's bases: explicit complex exponentials
per kept wavenumber, the forward-normalised DFT, and the synthesis
``y_j = sum_k c_k Re(yhat_k exp(2 pi i k.j / n'))`` with ``c = 1`` at ``k_last = 0`` or at the
Nyquist wavenumber of an even output grid, ``2`` otherwise, and wavenumbers that do not fit
on the output grid dropped. Differentiable, so gradients are checked against it too.
"""

from __future__ import annotations

import math

import torch


def kept(n_modes: int, last: bool) -> list[int]:
    if last:
        return list(range(n_modes // 2 + 1))
    return list(range(-(n_modes // 2), n_modes - n_modes // 2))


def direct_spectral_conv(x, weight, bias, n_modes, output_shape):
    """x: (B, Ci, *n) float64; weight: (*kept, Ci, Co, 2); returns (B, Co, *output_shape)."""
    d = len(n_modes)
    spatial = x.shape[2:]
    w = torch.view_as_complex(weight.to(torch.float64).contiguous())
    xc = x.to(torch.complex128)
    letters = "pqr"[:d]
    # analysis, one axis at a time with explicit exponentials
    spec = xc
    for a in range(d):
        k = torch.tensor(kept(n_modes[a], a == d - 1), dtype=torch.float64)
        j = torch.arange(spatial[a], dtype=torch.float64)
        e = torch.exp(-2j * math.pi * k[:, None] * j[None, :] / spatial[a]) / spatial[a]
        spec = torch.movedim(torch.tensordot(spec, e, dims=([2 + a], [1])), -1, 2 + a)
    # mixing: (B, Ci, *K) x (*K, Ci, Co) -> (B, Co, *K)
    eq = f"bi{letters},{letters}io->bo{letters}"
    out_spec = torch.einsum(eq, spec, w)
    # synthesis
    y = out_spec
    for a in range(d):
        freqs = kept(n_modes[a], a == d - 1)
        n_out = output_shape[a]
        j = torch.arange(n_out, dtype=torch.float64)
        k = torch.tensor(freqs, dtype=torch.float64)
        if a == d - 1:
            fits = [kk <= n_out // 2 for kk in freqs]
            c = [
                0.0 if not f else 1.0 if kk == 0 or 2 * kk == n_out else 2.0
                for kk, f in zip(freqs, fits)
            ]
        else:
            c = [1.0 if -(n_out // 2) <= kk <= (n_out - 1) // 2 else 0.0 for kk in freqs]
        c = torch.tensor(c, dtype=torch.float64)
        e = torch.exp(2j * math.pi * j[:, None] * k[None, :] / n_out) * c[None, :]
        y = torch.movedim(torch.tensordot(y, e, dims=([2 + a], [1])), -1, 2 + a)
    y = y.real
    if bias is not None:
        y = y + bias.to(torch.float64)
    return y
