r"""``gemm`` backend: truncated transforms as real matrix products, one axis at a time.

Analysis of ``N = B*C`` real fields ``(N, n_0, ..., n_{d-1})`` takes ``d`` steps. Step 0 maps
the real axis 0 to its kept complex coefficients, a batched GEMM
``(2 m_0, n_0) @ (n_0, n_1 ... n_{d-1})`` per field that is wide enough to use the BLAS well
and shrinks the data by ``2 m_0 / n_0``. Step ``a > 0`` contracts axis ``a`` *together with* the
real/imaginary pair, which always sits just before it, with the real block matrix
``[[Re, -Im], [Im, Re]]`` of the complex DFT: one GEMM per step, no recombination passes.
Layouts between steps::

    (N, n_0, n_1, ..., n_{d-1})                     real field
    (N, m_0, 2, n_1, ..., n_{d-1})                  after step 0
    (N, m_0, m_1, 2, n_2, ..., n_{d-1})             after step 1
    (N, m_0, ..., m_{d-2}, 2, m_{d-1})              spectrum (last step: part-major output)

Synthesis runs the same steps in reverse order, each with its own matrix, and ends with a
real-output GEMM along axis 0 written straight into the result. Every step is a real linear
map, so its adjoint is its transposed matrix: the backward of analysis is the synthesis
routine run with the transposed analysis matrices, and vice versa. Each direction is a custom
autograd ``Function`` that saves nothing but its constant matrices.

Spectra are exchanged in the core's canonical layout ``(M_total, B, 2*C)``.
"""

from __future__ import annotations

import math

import torch

from opflow.spectral import fourier

__all__ = ["analyze", "synthesize"]


def _analysis_steps(x: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Real ``(N, *s)`` -> spectrum ``(N, m_0, ..., m_{d-2}, 2, m_{d-1})``."""
    n, *sizes = x.shape
    t = x
    rows = n  # product of N and the axes already transformed
    for axis, mat in enumerate(mats):
        width = sizes[axis] if axis == 0 else 2 * sizes[axis]  # contracted length
        q = math.prod(sizes[axis + 1 :])
        if q == 1:
            t = t.reshape(rows, width) @ mat.T
        else:
            t = torch.matmul(mat, t.reshape(rows, width, q))
        rows *= mat.shape[0] // 2
    kept = [m.shape[0] // 2 for m in mats]
    return t.view(n, *kept[:-1], 2, kept[-1])


def _synthesis_steps(t: torch.Tensor, mats: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """Spectrum ``(N, m_0, ..., 2, m_{d-1})`` -> real ``out`` ``(N, *s)`` (returned)."""
    n = t.shape[0]
    kept = [m.shape[1] // 2 for m in mats]
    sizes = list(out.shape[1:])
    for axis in range(len(mats) - 1, -1, -1):
        rows = n * math.prod(kept[:axis])
        q = math.prod(sizes[axis + 1 :])
        last = axis == 0  # the last step writes straight into the result
        if q == 1:  # contracting the trailing dim: one plain GEMM
            flat = t.reshape(rows, 2 * kept[axis])
            t = torch.mm(flat, mats[axis].T, out=out.view(rows, -1) if last else None)
        else:
            flat = t.reshape(rows, 2 * kept[axis], q)
            t = torch.matmul(mats[axis], flat, out=out.view(rows, -1, q) if last else None)
    return out


def _to_canonical(t: torch.Tensor, batch: int, channels: int) -> torch.Tensor:
    """``(B*C, m_0, ..., 2, m_{d-1})`` -> ``(M_total, B, 2*C)``."""
    d = t.ndim - 2
    t = t.reshape(batch, channels, *t.shape[1:])  # (B, C, m_0..m_{d-2}, 2, m_{d-1})
    ri = 2 + d - 1
    modes = [*range(2, ri), ri + 1]
    t = t.permute(*modes, 0, ri, 1)
    return t.reshape(-1, batch, 2 * channels)


def _from_canonical(spec: torch.Tensor, kept: list[int], channels: int) -> torch.Tensor:
    """``(M_total, B, 2*C)`` -> ``(B*C, m_0, ..., 2, m_{d-1})``."""
    d, batch = len(kept), spec.shape[1]
    t = spec.view(*kept, batch, 2, channels)  # (m_0..m_{d-1}, B, 2, C)
    t = t.permute(d, d + 2, *range(d - 1), d + 1, d - 1)
    return t.reshape(batch * channels, *kept[:-1], 2, kept[-1])


def _analyze(x: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    b, c, *spatial = x.shape
    return _to_canonical(_analysis_steps(x.reshape(b * c, *spatial), mats), b, c)


def _synthesize(
    spec: torch.Tensor, mats: list[torch.Tensor], channels: int, out_shape: tuple[int, ...]
) -> torch.Tensor:
    kept = [m.shape[1] // 2 for m in mats]
    out = spec.new_empty(spec.shape[1], channels, *out_shape)
    _synthesis_steps(_from_canonical(spec, kept, channels), mats, out.view(-1, *out_shape))
    return out


def _transposed(mats: list[torch.Tensor]) -> list[torch.Tensor]:
    return [fourier.transposed(m) for m in mats]


class _Analysis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mats):
        ctx.mats, ctx.shape = mats, x.shape
        return _analyze(x, mats)

    @staticmethod
    def backward(ctx, grad_spec):
        channels, spatial = ctx.shape[1], tuple(ctx.shape[2:])
        grad_x = _synthesize(grad_spec.contiguous(), _transposed(ctx.mats), channels, spatial)
        return grad_x, None


class _Synthesis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, mats, channels, out_shape):
        ctx.mats = mats
        return _synthesize(spec, mats, channels, out_shape)

    @staticmethod
    def backward(ctx, grad_y):
        return _analyze(grad_y.contiguous(), _transposed(ctx.mats)), None, None, None


def analyze(x: torch.Tensor, n_modes: tuple[int, ...]) -> torch.Tensor:
    """Kept spectrum of real ``x`` ``(B, C, *s)`` in canonical layout ``(M_total, B, 2C)``."""
    d = len(n_modes)
    mats = [
        fourier.analysis_step(n, m, a, d, x.dtype, x.device)
        for a, (n, m) in enumerate(zip(x.shape[2:], n_modes))
    ]
    return _Analysis.apply(x.contiguous(), mats)


def synthesize(
    spec: torch.Tensor, n_modes: tuple[int, ...], channels: int, output_shape: tuple[int, ...]
) -> torch.Tensor:
    """Real field ``(B, channels, *output_shape)`` from a canonical spectrum."""
    d = len(n_modes)
    mats = [
        fourier.synthesis_step(n, m, a, d, spec.dtype, spec.device)
        for a, (n, m) in enumerate(zip(output_shape, n_modes))
    ]
    return _Synthesis.apply(spec.contiguous(), mats, channels, tuple(output_shape))
