r"""``gemm`` backend: truncated transforms as real matrix products, one axis at a time.

Analysis of ``N = B*C`` real fields ``(N, n_0, ..., n_{d-1})`` takes ``d`` steps. Step 0 maps
the real axis 0 to complex coefficients, a batched GEMM ``(2 m_0, n_0) @ (n_0, n_1 ... n_{d-1})``
per field that is wide enough to use the BLAS well and shrinks the data by ``2 m_0 / n_0``.
Step ``a > 0`` contracts axis ``a`` *together with* the real/imaginary pair, which always sits
just before it, with the real block matrix ``[[Re, -Im], [Im, Re]]`` of the complex DFT: one
GEMM per step, no recombination passes.

**Half of axis 0.** A real field's coefficients satisfy ``X[-k] = conj(X[k])``, so step 0
computes only ``k_0 >= 0`` (``m_0 = M_0//2 + 1`` instead of ``M_0``: ~45% fewer flops in the
largest step, forward and backward). A stored coefficient with ``k_0 < 0`` is then
``conj(X[-k])``: the middle axes are computed over symmetric ranges, and the last step gives
each row's coefficients twice, directly and mirrored (``conj`` of the coefficient at
``-k_{d-1}``), see :func:`opflow.spectral.fourier.analysis_step`. A gather by a precomputed slot
map (:func:`_slots`) picks the stored coefficients out of these rows while converting to the
canonical layout, a copy that had to be made anyway. Synthesis is the mirror image: the
stored coefficients are scattered into rows (``k_0 < 0`` into the mirrored half of row
``-k_0``), and the last step takes the real part of ``sum_{k_0 >= 0}``. Layouts::

    (N, n_0, n_1, ..., n_{d-1})                       real field
    (N, m_0, 2, n_1, ..., n_{d-1})                    after step 0
    (N, m_0, m_1, 2, n_2, ..., n_{d-1})               after step 1
    (N, m_0, ..., m_{d-2}, 2, 2, m_{d-1})             last step: (direct/mirrored, part, mode)

A 1-D field has no mirroring: its single step is the half (rfft) axis.

Synthesis runs the same steps in reverse order, each with its own matrix, and ends with a
real-output GEMM along axis 0 written straight into the result. Every step is a real linear
map, so its adjoint is its transposed matrix: the backward of analysis is the synthesis
routine run with the transposed analysis matrices, and vice versa, with the slot map's
inverse (:func:`_sources`) as the adjoint of the gather. Each direction is a custom autograd
``Function`` that saves nothing but its constant matrices.

Spectra are exchanged in the core's canonical layout ``(M_total, B, 2*C)``.
"""

from __future__ import annotations

import itertools
import math
from functools import lru_cache

import torch

from opflow.spectral import fourier

__all__ = ["analyze", "synthesize"]


def _analysis_steps(x: torch.Tensor, mats: list[torch.Tensor]) -> torch.Tensor:
    """Real ``(N, *s)`` -> rows ``(N, R, 2, m_{d-1})`` (``R`` rows of last-axis coefficients)."""
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
    last_kept = mats[-1].shape[0] // (2 if len(mats) == 1 else 4)
    return t.view(n, -1, 2, last_kept)


def _synthesis_steps(t: torch.Tensor, mats: list[torch.Tensor], out: torch.Tensor) -> torch.Tensor:
    """Rows ``(N, R, 2, m_{d-1})`` -> real ``out`` ``(N, *s)`` (returned)."""
    n = out.shape[0]
    sizes = list(out.shape[1:])
    for axis in range(len(mats) - 1, -1, -1):
        rows = n * math.prod(m.shape[1] // 2 for m in mats[:axis])
        width = mats[axis].shape[1]  # contracted length
        q = math.prod(sizes[axis + 1 :])
        last = axis == 0  # the last step writes straight into the result
        if q == 1:  # contracting the trailing dim: one plain GEMM
            t = torch.mm(
                t.reshape(rows, width), mats[axis].T, out=out.view(rows, -1) if last else None
            )
        else:
            flat = t.reshape(rows, width, q)
            t = torch.matmul(mats[axis], flat, out=out.view(rows, -1, q) if last else None)
    return out


@lru_cache(maxsize=256)
def _slot_map(n_modes: tuple[int, ...], grid: tuple[int, ...]) -> tuple[int, ...]:
    """Row (in the steps' layout) of each stored row of coefficients; -1 if it is dropped.

    Stored rows run over the kept wavenumbers ``(k_0, ..., k_{d-2})`` of all axes but the
    last (canonical order). Row ``(k_0 >= 0, k_1, ...)`` is the direct half of step row
    ``(k_0, k_1, ...)``; row ``(k_0 < 0, k_1, ...)`` the mirrored half of ``(-k_0, -k_1, ...)``.
    A row with a wavenumber that does not fit on ``grid`` (axes but the last) maps to -1.
    """
    d = len(n_modes)
    if d == 1:
        return (0,)
    kept = [fourier.kept_frequencies(m, half=False) for m in n_modes[:-1]]
    fits = [[fourier.fits(k, n) for k in freqs] for freqs, n in zip(kept, grid[:-1])]
    steps = [fourier.step_frequencies(m, a, d) for a, m in enumerate(n_modes[:-1])]
    slots = []
    for index in itertools.product(*(range(len(k)) for k in kept)):
        ks = [kept[a][i] for a, i in enumerate(index)]
        if not all(fits[a][i] for a, i in enumerate(index)):
            slots.append(-1)
            continue
        sign = 1 if ks[0] >= 0 else -1
        row = 0
        for freqs, k in zip(steps, ks):
            row = row * len(freqs) + freqs.index(sign * k)
        slots.append(2 * row + (0 if sign > 0 else 1))
    return tuple(slots)


def _n_rows(n_modes: tuple[int, ...]) -> int:
    """Rows ``R`` of the steps' layout (both halves for ``d > 1``)."""
    d = len(n_modes)
    if d == 1:
        return 1
    return 2 * math.prod(len(fourier.step_frequencies(m, a, d)) for a, m in enumerate(n_modes[:-1]))


def _index(positions: list[int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """``positions`` as an index tensor (-1 clamped to 0), and where the -1 entries are."""
    pos = torch.tensor(positions, dtype=torch.long)
    return pos.clamp(min=0).to(device), (pos < 0).nonzero().flatten().to(device)


@lru_cache(maxsize=256)
def _slots(n_modes: tuple[int, ...], grid: tuple[int, ...], device: torch.device):
    """Gather index: step row of each stored row (see :func:`_slot_map`)."""
    return _index(list(_slot_map(n_modes, grid)), device)


@lru_cache(maxsize=256)
def _sources(n_modes: tuple[int, ...], grid: tuple[int, ...], device: torch.device):
    """The inverse gather: stored row of each step row, -1 (a zero row) if none."""
    inverse = [-1] * _n_rows(n_modes)
    for stored, slot in enumerate(_slot_map(n_modes, grid)):
        if slot >= 0:
            inverse[slot] = stored
    return _index(inverse, device)


def _gather(t: torch.Tensor, index: tuple[torch.Tensor, torch.Tensor], dim: int) -> torch.Tensor:
    """``t.index_select(dim, ...)`` into a fresh contiguous tensor, zero where marked -1."""
    positions, empty = index
    out = t.index_select(dim, positions)
    return out.index_fill_(dim, empty, 0.0) if empty.numel() else out


def _to_canonical(
    rows: torch.Tensor, slots: tuple[torch.Tensor, torch.Tensor], batch: int, channels: int
) -> torch.Tensor:
    """Step rows ``(B*C, R, 2, m_{d-1})`` -> stored coefficients ``(M_total, B, 2*C)``."""
    _, n_rows, _, last_kept = rows.shape
    t = rows.view(batch, channels, n_rows, 2, last_kept).permute(2, 4, 0, 3, 1)
    return _gather(t, slots, 0).view(-1, batch, 2 * channels)  # one copy: gather + permute


def _from_canonical(
    spec: torch.Tensor, sources: tuple[torch.Tensor, torch.Tensor], last_kept: int, channels: int
) -> torch.Tensor:
    """Stored coefficients ``(M_total, B, 2*C)`` -> step rows ``(B*C, R, 2, m_{d-1})``."""
    batch = spec.shape[1]
    t = spec.view(-1, last_kept, batch, 2, channels).permute(2, 4, 0, 3, 1)
    return _gather(t, sources, 2).view(batch * channels, -1, 2, last_kept)


def _analyze(x: torch.Tensor, mats: list[torch.Tensor], slots) -> torch.Tensor:
    b, c, *spatial = x.shape
    return _to_canonical(_analysis_steps(x.reshape(b * c, *spatial), mats), slots, b, c)


def _synthesize(
    spec: torch.Tensor,
    mats: list[torch.Tensor],
    sources,
    last_kept: int,
    channels: int,
    out_shape: tuple[int, ...],
) -> torch.Tensor:
    out = spec.new_empty(spec.shape[1], channels, *out_shape)
    rows = _from_canonical(spec, sources, last_kept, channels)
    _synthesis_steps(rows, mats, out.view(-1, *out_shape))
    return out


def _transposed(mats: list[torch.Tensor]) -> list[torch.Tensor]:
    return [fourier.transposed(m) for m in mats]


def _last_kept(n_modes: tuple[int, ...]) -> int:
    return fourier.n_kept(n_modes[-1], half=True)


class _Analysis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, mats, n_modes):
        ctx.mats, ctx.shape, ctx.n_modes = mats, x.shape, n_modes
        return _analyze(x, mats, _slots(n_modes, tuple(x.shape[2:]), x.device))

    @staticmethod
    def backward(ctx, grad_spec):
        channels, spatial = ctx.shape[1], tuple(ctx.shape[2:])
        sources = _sources(ctx.n_modes, spatial, grad_spec.device)
        grad_x = _synthesize(
            grad_spec.contiguous(),
            _transposed(ctx.mats),
            sources,
            _last_kept(ctx.n_modes),
            channels,
            spatial,
        )
        return grad_x, None, None


class _Synthesis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, mats, n_modes, channels, out_shape):
        ctx.mats, ctx.n_modes, ctx.out_shape = mats, n_modes, out_shape
        sources = _sources(n_modes, out_shape, spec.device)
        return _synthesize(spec, mats, sources, _last_kept(n_modes), channels, out_shape)

    @staticmethod
    def backward(ctx, grad_y):
        slots = _slots(ctx.n_modes, ctx.out_shape, grad_y.device)
        grad_spec = _analyze(grad_y.contiguous(), _transposed(ctx.mats), slots)
        return grad_spec, None, None, None, None


def analyze(x: torch.Tensor, n_modes: tuple[int, ...]) -> torch.Tensor:
    """Kept spectrum of real ``x`` ``(B, C, *s)`` in canonical layout ``(M_total, B, 2C)``."""
    d = len(n_modes)
    mats = [
        fourier.analysis_step(n, m, a, d, x.dtype, x.device)
        for a, (n, m) in enumerate(zip(x.shape[2:], n_modes))
    ]
    return _Analysis.apply(x.contiguous(), mats, tuple(n_modes))


def synthesize(
    spec: torch.Tensor, n_modes: tuple[int, ...], channels: int, output_shape: tuple[int, ...]
) -> torch.Tensor:
    """Real field ``(B, channels, *output_shape)`` from a canonical spectrum."""
    d = len(n_modes)
    mats = [
        fourier.synthesis_step(n, m, a, d, spec.dtype, spec.device)
        for a, (n, m) in enumerate(zip(output_shape, n_modes))
    ]
    out_shape = tuple(int(s) for s in output_shape)
    return _Synthesis.apply(spec.contiguous(), mats, tuple(n_modes), channels, out_shape)
