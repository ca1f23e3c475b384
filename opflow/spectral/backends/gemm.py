r"""``gemm`` backend: truncated transforms as real matrix products, one axis at a time.

Analysis of a field ``(B, C, n_0, ..., n_{d-1})`` runs axis 0 first: a real -> complex batched
GEMM ``(2 m_0, n_0) @ (n_0, n_1 ... n_{d-1})`` per image, wide enough to use the BLAS well and
shrinking the data by ``2 m_0 / n_0``; then every further axis is a small complex DFT over the
kept coefficients only (the last one keeps the ``M//2 + 1`` non-negative wavenumbers of a real
field). Synthesis is the mirror image, ending with a real-output GEMM written straight into
the result. When the kept modes are few compared with the grid this is far less work than a
full FFT, and it lands on BLAS.

Both maps are linear with known adjoints (conjugate-transposed matrices): the adjoint of
analysis is the synthesis routine run with the adjoint matrices and vice versa, so each map is
a custom autograd ``Function`` that saves nothing but its constant matrices.

Complex tensors are real tensors ``(N, 2, *dims)`` (real and imaginary parts on dim 1); a
stacked complex matrix is ``[Re M; Im M]`` (see :mod:`opflow.spectral.fourier`). Spectra use
the core's canonical layout ``(M_total, B, 2*C)``.
"""

from __future__ import annotations

import math

import torch

from opflow.spectral import fourier

__all__ = ["analyze", "synthesize"]


def _combine(prod: torch.Tensor) -> torch.Tensor:
    """``(N, 2[part of z], P, 2[part of M], ...)`` -> the complex product ``(N, 2, P, ...)``."""
    re = prod[:, 0, :, 0] - prod[:, 1, :, 1]
    im = prod[:, 1, :, 0] + prod[:, 0, :, 1]
    return torch.stack((re, im), dim=1)


def _complex_step(t: torch.Tensor, stacked: torch.Tensor, axis: int) -> torch.Tensor:
    """Apply stacked ``(2r, n_a)`` along spatial ``axis`` of complex ``t`` ``(N, 2, *dims)``."""
    n, _, *dims = t.shape
    p, n_a, q = math.prod(dims[:axis]), dims[axis], math.prod(dims[axis + 1 :])
    r = stacked.shape[0] // 2
    if q == 1:
        prod = (t.reshape(-1, n_a) @ stacked.T).view(n, 2, p, 2, r)
    else:
        prod = torch.matmul(stacked, t.reshape(n * 2 * p, n_a, q)).view(n, 2, p, 2, r, q)
    return _combine(prod).view(n, 2, *dims[:axis], r, *dims[axis + 1 :])


def _analysis(x: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Real ``(N, *s)`` -> complex ``(N, 2, *kept)`` with stacked analysis matrices per axis."""
    n, n_0, *rest = x.shape
    r = mats[0].shape[0] // 2
    q = math.prod(rest)
    if q == 1:
        t = x.reshape(n, n_0) @ mats[0].T
    else:
        t = torch.matmul(mats[0], x.reshape(n, n_0, q))
    t = t.view(n, 2, r, *rest)
    for axis in range(1, len(mats)):
        t = _complex_step(t, mats[axis], axis)
    return t


def _synthesis(t: torch.Tensor, mats: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """Complex ``(N, 2, *kept)`` -> real ``out`` ``(N, *s)``: Re of the stacked synthesis."""
    for axis in range(len(mats) - 1, 0, -1):
        t = _complex_step(t, mats[axis], axis)
    n, _, m_0, *rest = t.shape
    real_mat = fourier.real_output_form(mats[0])
    q = math.prod(rest)
    if q == 1:
        torch.mm(t.reshape(n, 2 * m_0), real_mat.T, out=out.view(n, -1))
    else:
        torch.matmul(real_mat, t.reshape(n, 2 * m_0, q), out=out.view(n, -1, q))
    return out


def _to_canonical(t: torch.Tensor, batch: int, channels: int) -> torch.Tensor:
    """``(B*C, 2, *kept)`` -> ``(M_total, B, 2*C)``."""
    kept = t.shape[2:]
    d = len(kept)
    t = t.reshape(batch, channels, 2, *kept).permute(*range(3, 3 + d), 0, 2, 1)
    return t.reshape(math.prod(kept), batch, 2 * channels)


def _from_canonical(spec: torch.Tensor, kept: tuple[int, ...], channels: int) -> torch.Tensor:
    """``(M_total, B, 2*C)`` -> ``(B*C, 2, *kept)``."""
    d, batch = len(kept), spec.shape[1]
    t = spec.view(*kept, batch, 2, channels).permute(d, d + 2, d + 1, *range(d))
    return t.reshape(batch * channels, 2, *kept)


def _analyze(x: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    b, c, *spatial = x.shape
    return _to_canonical(_analysis(x.reshape(b * c, *spatial), mats), b, c)


def _synthesize(
    spec: torch.Tensor, mats: list[torch.Tensor], channels: int, out_shape: tuple[int, ...]
) -> torch.Tensor:
    kept = tuple(m.shape[1] for m in mats)
    out = spec.new_empty(spec.shape[1], channels, *out_shape)
    _synthesis(_from_canonical(spec, kept, channels), mats, out.view(-1, *out_shape))
    return out


def _adjoints(mats: list[torch.Tensor]) -> list[torch.Tensor]:
    return [fourier.adjoint_stacked(m) for m in mats]


class _Analysis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mats):
        ctx.mats, ctx.shape = mats, x.shape
        return _analyze(x, mats)

    @staticmethod
    def backward(ctx, grad_spec):
        channels, spatial = ctx.shape[1], tuple(ctx.shape[2:])
        grad_x = _synthesize(grad_spec.contiguous(), _adjoints(ctx.mats), channels, spatial)
        return grad_x, None


class _Synthesis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, mats, channels, out_shape):
        ctx.mats = mats
        return _synthesize(spec, mats, channels, out_shape)

    @staticmethod
    def backward(ctx, grad_y):
        return _analyze(grad_y.contiguous(), _adjoints(ctx.mats)), None, None, None


def analyze(x: torch.Tensor, n_modes: tuple[int, ...]) -> torch.Tensor:
    """Kept spectrum of real ``x`` ``(B, C, *s)`` in canonical layout ``(M_total, B, 2C)``."""
    d = len(n_modes)
    mats = [
        fourier.analysis_matrix(n, m, a == d - 1, x.dtype, x.device)
        for a, (n, m) in enumerate(zip(x.shape[2:], n_modes))
    ]
    return _Analysis.apply(x.contiguous(), mats)


def synthesize(
    spec: torch.Tensor, n_modes: tuple[int, ...], channels: int, output_shape: tuple[int, ...]
) -> torch.Tensor:
    """Real field ``(B, channels, *output_shape)`` from a canonical spectrum."""
    d = len(n_modes)
    mats = [
        fourier.synthesis_matrix(n, m, a == d - 1, spec.dtype, spec.device)
        for a, (n, m) in enumerate(zip(output_shape, n_modes))
    ]
    return _Synthesis.apply(spec.contiguous(), mats, channels, tuple(output_shape))
