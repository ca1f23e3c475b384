r"""``triton`` backend: truncated DFTs and per-mode mixing as Triton kernels for CUDA GPUs.

Design notes, data flow and the memory-traffic model: ``docs/triton_kernels.md``; the model's
numbers come from ``benchmarks/traffic.py``.

Three kernels do all the work (:mod:`opflow.spectral.backends.triton_kernels`, where each is
described): a truncated DFT along one axis, the forward's last analysis step fused with the
per-mode channel mixing, and per-mode complex matrix products for the mixing's gradients. This
module plans them (the tables of each DFT step, cached per device) and launches them.

Backward passes use the adjoint: the adjoint of a truncated DFT is the same kernel with the
tables swapped and the sign flipped (``A^H``), and the mixing's gradients are ``G W^H`` and
``X^H G``. Inputs may be float32 or bfloat16 (read and accumulated in float32; the spectra stay
float32, the output has the input's dtype).

On the CPU the kernels run only under Triton's interpreter (``TRITON_INTERPRET=1``, set before
``triton`` is first imported by anything: Triton binds its own library to the interpreter at
import), which the tests use to check them against the ``fft`` reference; it is slow and meant
for correctness only.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import triton

from opflow.errors import BackendError
from opflow.spectral.backends import TRITON_MAX_POINTS
from opflow.spectral.backends.triton_kernels import analysis_mix_kernel, dft_kernel, mix_kernel
from opflow.spectral.cache import constant_cache
from opflow.spectral.fourier import _synthesis_weights, kept_frequencies

__all__ = ["analyze", "synthesize", "spectral_conv", "interpreter_active", "check_device"]


def interpreter_active() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def check_device(device: torch.device) -> None:
    """Raise :class:`BackendError` unless the kernels can run on ``device``."""
    if device.type != "cuda" and not interpreter_active():
        raise BackendError(
            f"backend='triton' got a tensor on {device.type}",
            "a CUDA tensor (or TRITON_INTERPRET=1, Triton's slow CPU interpreter, for tests)",
            "use backend='auto' or 'gemm' on the CPU",
        )


# --------------------------------------------------------------------------------------------
# one DFT step and its adjoint


@dataclass(frozen=True)
class _Step:
    """A truncated DFT along one axis: the tables of :func:`dft_kernel` and its flags."""

    in_idx: torch.Tensor  # (N,) int32, reduced mod period
    out_idx: torch.Tensor  # (K,) int32, reduced mod period
    in_w: torch.Tensor  # (N,) float32
    out_w: torch.Tensor  # (K,) float32
    period: int
    sign: int
    scale: float
    real_in: bool
    real_out: bool

    def adjoint(self) -> _Step:
        """``A^H``: contract over the outputs, conjugate phase, same weights and scale."""
        return _Step(
            self.out_idx,
            self.in_idx,
            self.out_w,
            self.in_w,
            self.period,
            -self.sign,
            self.scale,
            self.real_out,
            self.real_in,
        )


def _table(values: list[int] | torch.Tensor, dtype: torch.dtype, device: torch.device):
    return torch.as_tensor(values, dtype=dtype).to(device).contiguous()


@constant_cache(maxsize=256)
def _analysis(n: int, n_modes: int, half: bool, device: torch.device) -> _Step:
    freqs = kept_frequencies(n_modes, half=half)
    return _Step(
        in_idx=_table(list(range(n)), torch.int32, device),
        out_idx=_table([k % n for k in freqs], torch.int32, device),
        in_w=_table([1.0] * n, torch.float32, device),
        out_w=_table([1.0] * len(freqs), torch.float32, device),
        period=n,
        sign=-1,
        scale=1.0 / n,
        real_in=half,
        real_out=False,
    )


@constant_cache(maxsize=256)
def _synthesis(n_out: int, n_modes: int, half: bool, device: torch.device) -> _Step:
    freqs = kept_frequencies(n_modes, half=half)
    return _Step(
        in_idx=_table([k % n_out for k in freqs], torch.int32, device),
        out_idx=_table(list(range(n_out)), torch.int32, device),
        # c_k of the Hermitian sum on the last axis; 0 drops wavenumbers the grid cannot hold
        in_w=_table(_synthesis_weights(freqs, n_out, half).float(), torch.float32, device),
        out_w=_table([1.0] * n_out, torch.float32, device),
        period=n_out,
        sign=1,
        scale=1.0,
        real_in=False,
        real_out=half,
    )


_BLOCK_R, _BLOCK_K, _BLOCK_N = 32, 32, 32


def _run_step(step: _Step, x: torch.Tensor, pre: int, post: int) -> torch.Tensor:
    """Apply ``step`` to ``x``: ``(pre, N, post)`` real or ``(2, pre, N, post)`` complex."""
    if step.period >= TRITON_MAX_POINTS:
        raise BackendError(
            f"a grid axis of {step.period} points",
            f"fewer than {TRITON_MAX_POINTS} points per axis (the kernels' exact int32 phase)",
            "use backend='fft' for such grids",
        )
    n, k = step.in_idx.numel(), step.out_idx.numel()
    x = x.contiguous()
    xr, xi = (x, x) if step.real_in else (x[0], x[1])
    shape = (pre, k, post) if step.real_out else (2, pre, k, post)
    dtype = torch.float32 if not step.real_out else x.dtype
    y = torch.empty(shape, dtype=dtype, device=x.device)
    yr, yi = (y, y) if step.real_out else (y[0], y[1])
    grid = (triton.cdiv(pre * post, _BLOCK_R), triton.cdiv(k, _BLOCK_K))
    dft_kernel[grid](
        xr,
        xi,
        yr,
        yi,
        step.in_idx,
        step.out_idx,
        step.in_w,
        step.out_w,
        pre,
        n,
        post,
        k,
        step.period,
        step.scale,
        SIGN=step.sign,
        HAS_IM=not step.real_in,
        REAL_OUT=step.real_out,
        BLOCK_R=_BLOCK_R,
        BLOCK_K=_BLOCK_K,
        BLOCK_N=_BLOCK_N,
    )
    return y


class _DFTStepFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, step, pre, post):
        ctx.step, ctx.pre, ctx.post, ctx.dtype = step, pre, post, x.dtype
        return _run_step(step, x, pre, post)

    @staticmethod
    def backward(ctx, grad):
        grad_x = _DFTStepFn.apply(grad.contiguous(), ctx.step.adjoint(), ctx.pre, ctx.post)
        return grad_x.to(ctx.dtype), None, None, None


def _along(x: torch.Tensor, step: _Step, axis: int) -> torch.Tensor:
    """Apply ``step`` along ``axis`` of the field ``x`` (``(R, *s)`` real or ``(2, R, *s)``)."""
    dims = x.shape if step.real_in else x.shape[1:]
    axis += 1  # the leading R = batch * channel axis
    pre, post = math.prod(dims[:axis]), math.prod(dims[axis + 1 :])
    flat_in = (pre, dims[axis], post) if step.real_in else (2, pre, dims[axis], post)
    y = _DFTStepFn.apply(x.reshape(flat_in), step, pre, post)
    out_dims = (*dims[:axis], step.out_idx.numel(), *dims[axis + 1 :])
    return y.reshape(out_dims if step.real_out else (2, *out_dims))


def _analyze_planes(x: torch.Tensor, n_modes: tuple[int, ...]) -> torch.Tensor:
    """Real ``(B, C, *s)`` -> kept spectrum planes ``(2, B*C, *kept)`` float32."""
    b, c, *spatial = x.shape
    d = len(n_modes)
    z = x.reshape(b * c, *spatial)
    z = _along(z, _analysis(spatial[-1], n_modes[-1], True, x.device), d - 1)
    for axis in range(d - 2, -1, -1):
        z = _along(z, _analysis(spatial[axis], n_modes[axis], False, x.device), axis)
    return z


def _synthesize_planes(
    z: torch.Tensor, n_modes: tuple[int, ...], output_shape: tuple[int, ...], dtype: torch.dtype
) -> torch.Tensor:
    """Planes ``(2, R, *kept)`` -> real field ``(R, *output_shape)`` of ``dtype``."""
    d = len(n_modes)
    for axis in range(d - 1):
        z = _along(z, _synthesis(output_shape[axis], n_modes[axis], False, z.device), axis)
    y = _along(z, _synthesis(output_shape[-1], n_modes[-1], True, z.device), d - 1)
    return y.to(dtype)


# --------------------------------------------------------------------------------------------
# per-mode mixing


def _launch_mix(a, a_strides, b, b_strides, c, c_strides, shape, conj_a, conj_b):
    """``C[m] = op(A[m]) op(B[m])``; strides are ``(plane, m, row, col)`` in elements."""
    m, i, j, k = shape
    grid = (m, triton.cdiv(i, 16), triton.cdiv(j, 16))
    mix_kernel[grid](
        a,
        b,
        c,
        i,
        j,
        k,
        *a_strides,
        *b_strides,
        *c_strides,
        CONJ_A=conj_a,
        CONJ_B=conj_b,
        BLOCK_I=16,
        BLOCK_J=16,
        BLOCK_K=16,
    )


class _AnalysisMixFn(torch.autograd.Function):
    """``T`` (``(B*Ci, N, Q)`` real or ``(2, B*Ci, N, Q)``) and weight ``(M, Ci, Co, 2)`` ->
    mixed spectrum planes ``(2, B, Co, M)``: the last analysis ``step`` fused with mixing.

    Backward recomputes ``X = step(T)`` (small: the kept modes) instead of saving it, then
    ``dW = X^H G``, ``dX = G W^H`` and ``dT = step^H(dX)``.
    """

    @staticmethod
    def forward(ctx, t, weight, step, batch, channels_in):
        t, weight = t.contiguous(), weight.contiguous()
        n, k0 = step.in_idx.numel(), step.out_idx.numel()
        q = t.shape[-1]
        m, co = k0 * q, weight.shape[2]
        tr, ti = (t, t) if step.real_in else (t[0], t[1])
        out = torch.empty(2, batch, co, m, dtype=torch.float32, device=t.device)
        grid = (m, triton.cdiv(batch, 16), triton.cdiv(co, 32))
        analysis_mix_kernel[grid](
            tr, ti, weight, out, step.out_idx,
            batch, channels_in, co, n, q, k0, step.period, step.scale,
            HAS_IM=not step.real_in, BLOCK_B=16, BLOCK_CI=16, BLOCK_CO=32, BLOCK_Y=32,
        )  # fmt: skip
        ctx.save_for_backward(t, weight)
        ctx.step, ctx.batch, ctx.channels_in = step, batch, channels_in
        return out

    @staticmethod
    def backward(ctx, grad):
        t, weight = ctx.saved_tensors
        step, b, ci = ctx.step, ctx.batch, ctx.channels_in
        co, q = weight.shape[2], t.shape[-1]
        m = step.out_idx.numel() * q
        grad = grad.contiguous()
        grad_t = grad_weight = None
        if ctx.needs_input_grad[1]:  # X^H G: (Ci x B)(B x Co), written as (M, Ci, Co, 2)
            spec = _run_step(step, t, b * ci, q)  # X, (2, B*Ci, K0, Q) = (2, B, Ci, M)
            grad_weight = torch.empty(m, ci, co, 2, dtype=torch.float32, device=t.device)
            _launch_mix(
                spec, (b * ci * m, 1, m, ci * m),  # X^T by strides, conjugated
                grad, (b * co * m, 1, co * m, m),
                grad_weight, (1, ci * co * 2, co * 2, 2),
                (m, ci, co, b), True, False,
            )  # fmt: skip
            grad_weight = grad_weight.to(weight.dtype)
        if ctx.needs_input_grad[0]:  # G W^H: (B x Co)(Co x Ci), then the adjoint DFT
            grad_spec = torch.empty(2, b, ci, m, dtype=torch.float32, device=t.device)
            _launch_mix(
                grad, (b * co * m, 1, co * m, m),
                weight, (1, ci * co * 2, 2, co * 2),  # W^T by strides, conjugated
                grad_spec, (b * ci * m, 1, ci * m, m),
                (m, b, ci, co), False, True,
            )  # fmt: skip
            grad_t = _run_step(step.adjoint(), grad_spec, b * ci, q).to(t.dtype)
        return grad_t, grad_weight, None, None, None


# --------------------------------------------------------------------------------------------
# the backend's API


def spectral_conv(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    n_modes: tuple[int, ...],
    output_shape: tuple[int, ...],
) -> torch.Tensor:
    """``(B, Ci, *s)`` -> ``(B, Co, *output_shape)``: analysis, mixing, synthesis, bias.

    ``weight``: ``(M_total, Ci, Co, 2)`` with the modes in the core's storage order. Every
    analysis step but the last (axis 0) runs alone; the last is fused with the mixing, so the
    kept input spectrum never reaches memory; synthesis starts from the mixed kept modes.
    """
    check_device(x.device)
    b, ci, *spatial = x.shape
    co, d = weight.shape[2], len(n_modes)
    t = x.reshape(b * ci, *spatial)
    if d > 1:
        t = _along(t, _analysis(spatial[-1], n_modes[-1], True, x.device), d - 1)
        for axis in range(d - 2, 0, -1):
            t = _along(t, _analysis(spatial[axis], n_modes[axis], False, x.device), axis)
    last = _analysis(spatial[0], n_modes[0], d == 1, x.device)
    dims = t.shape if last.real_in else t.shape[1:]  # (B*Ci, n0, *kept after axis 0)
    q = math.prod(dims[2:])
    flat = (b * ci, dims[1], q) if last.real_in else (2, b * ci, dims[1], q)
    mixed = _AnalysisMixFn.apply(t.reshape(flat), weight, last, b, ci)  # (2, B, Co, M)
    kept = (last.out_idx.numel(), *dims[2:])
    field = _synthesize_planes(mixed.reshape(2, b * co, *kept), n_modes, output_shape, x.dtype)
    field = field.reshape(b, co, *output_shape)
    return field if bias is None else field.add_(bias)


def analyze(x: torch.Tensor, n_modes: tuple[int, ...]) -> torch.Tensor:
    """Kept spectrum of real ``x`` ``(B, C, *s)`` in the canonical layout ``(M_total, B, 2C)``."""
    check_device(x.device)
    b, c, *_ = x.shape
    planes = _analyze_planes(x, n_modes)
    kept = planes.shape[2:]
    d = len(kept)
    t = planes.reshape(2, b, c, *kept).permute(*range(3, 3 + d), 1, 0, 2)  # (*kept, B, 2, C)
    return t.reshape(math.prod(kept), b, 2 * c)


def synthesize(
    spec: torch.Tensor, n_modes: tuple[int, ...], channels: int, output_shape: tuple[int, ...]
) -> torch.Tensor:
    """Real field ``(B, channels, *output_shape)`` from a canonical spectrum."""
    check_device(spec.device)
    _, b, _ = spec.shape
    kept = tuple(n_modes[:-1]) + (n_modes[-1] // 2 + 1,)
    d = len(kept)
    t = spec.reshape(*kept, b, 2, channels).permute(d + 1, d, d + 2, *range(d))  # (2, B, C, *k)
    planes = t.reshape(2, b * channels, *kept).float()
    field = _synthesize_planes(planes, n_modes, tuple(output_shape), spec.dtype)
    return field.reshape(b, channels, *output_shape)
