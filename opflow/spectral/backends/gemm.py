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
inverse (:func:`_sources`) as the adjoint of the gather. The four maps (:func:`analysis`,
:func:`synthesis` and their adjoints) run outside autograd and can add into an existing
result; each direction is a custom autograd ``Function`` over them that saves nothing.

Spectra are exchanged in the core's canonical layout ``(M_total, B, 2*C)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch.autograd.function import once_differentiable

from opflow.spectral import fourier
from opflow.spectral.cache import constant_cache
from opflow.spectral.mixing import add_bias, block_weight, mix_backward, zero_mode_index

__all__ = ["analyze", "gemm_conv_backward", "gemm_conv_forward", "spectral_conv", "synthesize"]


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


def _synthesis_steps(
    t: torch.Tensor, mats: list[torch.Tensor], out: torch.Tensor, accumulate: bool = False
) -> torch.Tensor:
    """Rows ``(N, R, 2, m_{d-1})`` -> real ``out`` ``(N, *s)`` (returned; added to it if
    ``accumulate``)."""
    n = out.shape[0]
    sizes = list(out.shape[1:])
    for axis in range(len(mats) - 1, -1, -1):
        rows = n * math.prod(m.shape[1] // 2 for m in mats[:axis])
        width = mats[axis].shape[1]  # contracted length
        q = math.prod(sizes[axis + 1 :])
        flat = t.reshape(rows, width) if q == 1 else t.reshape(rows, width, q)
        if axis > 0:
            t = flat @ mats[axis].T if q == 1 else torch.matmul(mats[axis], flat)
        elif q == 1:  # the last step writes (or adds) straight into the result
            result = out.view(rows, -1)
            if accumulate:
                result.addmm_(flat, mats[0].T)
            else:
                torch.mm(flat, mats[0].T, out=result)
        else:
            result = out.view(rows, -1, q)
            if accumulate:
                result.baddbmm_(mats[0].expand(rows, -1, -1), flat)
            else:
                torch.matmul(mats[0], flat, out=result)
    return out


@constant_cache(maxsize=256)
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


@constant_cache(maxsize=256)
def _slots(n_modes: tuple[int, ...], grid: tuple[int, ...], device: torch.device):
    """Gather index: step row of each stored row (see :func:`_slot_map`)."""
    return _index(list(_slot_map(n_modes, grid)), device)


@constant_cache(maxsize=256)
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


def _step_mats(
    step: Callable[..., torch.Tensor],
    n_modes: tuple[int, ...],
    grid: Sequence[int],
    dtype: torch.dtype,
    device: torch.device,
) -> list[torch.Tensor]:
    """The matrices of every axis for ``fourier.analysis_step`` or ``fourier.synthesis_step``."""
    d = len(n_modes)
    return [step(n, m, a, d, dtype, device) for a, (n, m) in enumerate(zip(grid, n_modes))]


def _analyze(x: torch.Tensor, mats: list[torch.Tensor], n_modes: tuple[int, ...]) -> torch.Tensor:
    """Rows of ``mats`` applied to ``x`` ``(B, C, *s)``, gathered into canonical layout."""
    b, c, *spatial = x.shape
    slots = _slots(n_modes, tuple(spatial), x.device)
    return _to_canonical(_analysis_steps(x.reshape(b * c, *spatial), mats), slots, b, c)


def _synthesize(
    spec: torch.Tensor,
    mats: list[torch.Tensor],
    n_modes: tuple[int, ...],
    channels: int,
    out_shape: tuple[int, ...],
    add_to: torch.Tensor | None,
) -> torch.Tensor:
    """A canonical spectrum scattered into rows and run through ``mats`` onto ``out_shape``."""
    out = spec.new_empty(spec.shape[1], channels, *out_shape) if add_to is None else add_to
    sources = _sources(n_modes, out_shape, spec.device)
    rows = _from_canonical(spec.contiguous(), sources, _last_kept(n_modes), channels)
    _synthesis_steps(rows, mats, out.view(-1, *out_shape), accumulate=add_to is not None)
    return out


def _last_kept(n_modes: tuple[int, ...]) -> int:
    return fourier.n_kept(n_modes[-1], half=True)


# The four maps below run outside autograd: the Functions that follow, and fused layers that
# write their own backward (:class:`opflow.models.fno.FNOBlock`), are built from them.


def analysis(x: torch.Tensor, n_modes: tuple[int, ...]) -> torch.Tensor:
    """Kept spectrum of real ``x`` ``(B, C, *s)``, canonical ``(M_total, B, 2C)``."""
    mats = _step_mats(fourier.analysis_step, n_modes, x.shape[2:], x.dtype, x.device)
    return _analyze(x.contiguous(), mats, n_modes)


def analysis_adjoint(
    grad_spec: torch.Tensor,
    n_modes: tuple[int, ...],
    shape: tuple[int, ...],
    add_to: torch.Tensor | None = None,
) -> torch.Tensor:
    """Adjoint of :func:`analysis` onto ``shape`` ``(B, C, *s)``: the gradient of the input.

    It is the synthesis routine run with the transposed analysis matrices. With ``add_to``
    (a contiguous ``(B, C, *s)`` tensor) the result is added into it in place and returned.
    """
    spatial = tuple(shape[2:])
    mats = _step_mats(fourier.analysis_step, n_modes, spatial, grad_spec.dtype, grad_spec.device)
    transposed = [fourier.transposed(m) for m in mats]
    return _synthesize(grad_spec, transposed, n_modes, shape[1], spatial, add_to)


def synthesis(
    spec: torch.Tensor,
    n_modes: tuple[int, ...],
    channels: int,
    output_shape: tuple[int, ...],
    add_to: torch.Tensor | None = None,
) -> torch.Tensor:
    """Real field ``(B, channels, *output_shape)`` from a canonical spectrum (added into
    ``add_to`` in place if given)."""
    out_shape = tuple(int(s) for s in output_shape)
    mats = _step_mats(fourier.synthesis_step, n_modes, out_shape, spec.dtype, spec.device)
    return _synthesize(spec, mats, n_modes, channels, out_shape, add_to)


def synthesis_adjoint(grad_y: torch.Tensor, n_modes: tuple[int, ...]) -> torch.Tensor:
    """Adjoint of :func:`synthesis`: the analysis routine with the transposed matrices."""
    grid = grad_y.shape[2:]
    mats = _step_mats(fourier.synthesis_step, n_modes, grid, grad_y.dtype, grad_y.device)
    return _analyze(grad_y.contiguous(), [fourier.transposed(m) for m in mats], n_modes)


class _Analysis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, n_modes):
        ctx.shape, ctx.n_modes = tuple(x.shape), n_modes
        return analysis(x, n_modes)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_spec):
        return analysis_adjoint(grad_spec, ctx.n_modes, ctx.shape), None


class _Synthesis(torch.autograd.Function):
    @staticmethod
    def forward(ctx, spec, n_modes, channels, out_shape):
        ctx.n_modes = n_modes
        return synthesis(spec, n_modes, channels, out_shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        return synthesis_adjoint(grad_y, ctx.n_modes), None, None, None


def analyze(x: torch.Tensor, n_modes: tuple[int, ...]) -> torch.Tensor:
    """Kept spectrum of real ``x`` ``(B, C, *s)`` in canonical layout ``(M_total, B, 2C)``."""
    return _Analysis.apply(x, tuple(n_modes))


def synthesize(
    spec: torch.Tensor, n_modes: tuple[int, ...], channels: int, output_shape: tuple[int, ...]
) -> torch.Tensor:
    """Real field ``(B, channels, *output_shape)`` from a canonical spectrum."""
    out_shape = tuple(int(s) for s in output_shape)
    return _Synthesis.apply(spec, tuple(n_modes), channels, out_shape)


# --------------------------------------------------------------------------------------------
# the whole layer as one autograd node


def gemm_conv_forward(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    n_modes: tuple[int, ...],
    output_shape: tuple[int, ...],
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """A spectral convolution on the ``gemm`` transforms, outside autograd.

    ``x`` ``(B, Ci, *s)``, ``weight`` ``(M_total, Ci, Co, 2)``, ``bias`` ``(Co, ...)`` or None.
    Returns ``y`` ``(B, Co, *output_shape)`` and what :func:`gemm_conv_backward` needs (the
    input's spectrum and the block weight, both small).
    """
    spec = analysis(x, n_modes)
    block = block_weight(weight)
    mixed = torch.bmm(spec, block)
    if bias is not None:
        add_bias(mixed, bias, n_modes)
    return synthesis(mixed, n_modes, weight.shape[2], output_shape), (spec, block)


def gemm_conv_backward(
    grad_y: torch.Tensor,
    saved: tuple[torch.Tensor, torch.Tensor],
    n_modes: tuple[int, ...],
    input_shape: tuple[int, ...],
    need_input: bool = True,
    add_to: torch.Tensor | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`gemm_conv_forward` for ``x``, ``weight`` and ``bias``.

    The input's gradient is added into ``add_to`` in place (and returned) if given: a layer
    that sums several branches of ``x`` accumulates their gradients in one buffer. The bias
    gradient is flat ``(Co,)``.
    """
    spec, block = saved
    grad_mixed = synthesis_adjoint(grad_y, n_modes)
    co = block.shape[2] // 2
    grad_bias = grad_mixed[zero_mode_index(n_modes), :, :co].sum(0)
    grad_spec, grad_weight = mix_backward(spec, block, grad_mixed, need_input, True)
    grad_x = None
    if need_input:
        grad_x = analysis_adjoint(grad_spec, n_modes, input_shape, add_to=add_to)
    return grad_x, grad_weight, grad_bias


class _GemmSpectralConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, n_modes, output_shape):
        y, saved = gemm_conv_forward(x, weight, bias, n_modes, output_shape)
        ctx.save_for_backward(*saved)
        ctx.n_modes, ctx.input_shape = n_modes, tuple(x.shape)
        ctx.bias_shape = None if bias is None else bias.shape
        return y

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_y):
        grad_x, grad_weight, grad_bias = gemm_conv_backward(
            grad_y, ctx.saved_tensors, ctx.n_modes, ctx.input_shape, ctx.needs_input_grad[0]
        )
        grad_bias = None if ctx.bias_shape is None else grad_bias.view(ctx.bias_shape)
        return grad_x, grad_weight, grad_bias, None, None


@torch.compiler.disable(recursive=True)
def spectral_conv(x, weight, bias, n_modes, output_shape) -> torch.Tensor:
    """The whole spectral convolution as one autograd node (transforms, mixing and the bias in
    the spectrum by hand; it saves only the small spectrum and the block weight).

    Run eagerly under ``torch.compile``: its cached per-grid matrices and slot maps are
    Python-level state that dynamo would trace into many small graphs; compiled code around it
    calls it as one opaque op."""
    return _GemmSpectralConv.apply(x, weight, bias, n_modes, output_shape)
