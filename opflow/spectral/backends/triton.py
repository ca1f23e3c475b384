r"""``triton`` backend: truncated DFTs and per-mode mixing as Triton kernels for CUDA GPUs.

Design notes, data flow and the memory-traffic model: ``docs/triton_kernels.md``; the model's
numbers come from :func:`opflow.spectral.traffic.memory_traffic`.

Three kernels do all the work, each a blocked matrix product in float32 with real and imaginary
parts in separate planes:

* :func:`_dft_kernel` — a truncated DFT along one axis of a ``(P, N, Q)`` view (``N`` the
  axis being contracted), writing ``(P, K, Q)``. Its ``N x K`` matrix is never stored: every
  tile is generated in registers from two integer tables (grid positions and wavenumbers,
  reduced modulo the period so ``k j mod n`` is exact) and two weight tables,

  .. math:: A_{oc} = s \, w^{out}_o \, w^{in}_c \, e^{\pm 2\pi i (a_c b_o \bmod n) / n}.

  Analysis along the last axis reads the real field and writes only the ``M//2 + 1`` kept
  columns; along the other axes it keeps only the kept rows; synthesis contracts over the kept
  modes straight from the mixed spectrum (no zero-padded spectrum, no full inverse FFT), the
  last axis taking the Hermitian real part (``c_k`` weights of :mod:`..fourier`).
* :func:`_analysis_mix_kernel` — the forward's last stage (analysis along axis 0, or the
  only axis in 1-D) fused with the per-mode channel mixing: each program computes one kept
  mode's ``(batch, Ci)`` coefficients in registers and multiplies them by that mode's
  ``Ci x Co`` weight, so the unmixed kept spectrum is never written.
* :func:`_mix_kernel` — per-mode complex matrix products ``C[m] = op(A[m]) op(B[m])`` with
  arbitrary strides and optional conjugation: the mixing's two gradients without copies.

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
from functools import lru_cache

import torch
import triton
import triton.language as tl

from opflow.errors import BackendError
from opflow.spectral.backends import TRITON_MAX_POINTS
from opflow.spectral.fourier import _synthesis_weights, kept_frequencies

__all__ = ["analyze", "synthesize", "spectral_conv", "interpreter_active", "check_device"]

_TWO_PI = 2.0 * math.pi


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
# kernels


@triton.jit
def _dft_kernel(
    xr_ptr,
    xi_ptr,
    yr_ptr,
    yi_ptr,
    in_idx_ptr,
    out_idx_ptr,
    in_w_ptr,
    out_w_ptr,
    P,
    N,
    Q,
    K,
    period,
    scale,
    SIGN: tl.constexpr,
    HAS_IM: tl.constexpr,
    REAL_OUT: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_K: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    """``y[p, o, q] = scale w_out[o] Σ_c w_in[c] x[p, c, q] e^{SIGN 2πi (a_c b_o mod n)/n}``.

    Rows of the product are the ``(p, q)`` pairs, so one kernel serves every axis of a
    contiguous tensor. ``REAL_OUT`` keeps only the real part.
    """
    pid_r = tl.program_id(0)
    pid_k = tl.program_id(1)
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < P * Q
    p = rows // Q
    q = rows % Q
    outs = pid_k * BLOCK_K + tl.arange(0, BLOCK_K)
    out_ok = outs < K
    b = tl.load(out_idx_ptr + outs, mask=out_ok, other=0)
    acc_re = tl.zeros((BLOCK_R, BLOCK_K), dtype=tl.float32)
    acc_im = tl.zeros((BLOCK_R, BLOCK_K), dtype=tl.float32)
    for start in range(0, N, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        col_ok = cols < N
        a = tl.load(in_idx_ptr + cols, mask=col_ok, other=0)
        w = tl.load(in_w_ptr + cols, mask=col_ok, other=0.0)
        # exact phase: a, b < period, so a * b fits int32 for periods below 46341
        theta = ((a[:, None] * b[None, :]) % period).to(tl.float32) * (6.283185307179586 / period)
        cos = tl.cos(theta) * w[:, None]
        sin = tl.sin(theta) * w[:, None] * SIGN
        offsets = p[:, None] * (N * Q) + cols[None, :] * Q + q[:, None]
        mask = row_ok[:, None] & col_ok[None, :]
        xr = tl.load(xr_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
        acc_re += tl.dot(xr, cos, input_precision="ieee")
        if not REAL_OUT:
            acc_im += tl.dot(xr, sin, input_precision="ieee")
        if HAS_IM:
            xi = tl.load(xi_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            acc_re -= tl.dot(xi, sin, input_precision="ieee")
            if not REAL_OUT:
                acc_im += tl.dot(xi, cos, input_precision="ieee")
    ow = tl.load(out_w_ptr + outs, mask=out_ok, other=0.0) * scale
    out_offsets = p[:, None] * (K * Q) + outs[None, :] * Q + q[:, None]
    out_mask = row_ok[:, None] & out_ok[None, :]
    tl.store(yr_ptr + out_offsets, acc_re * ow[None, :], mask=out_mask)
    if not REAL_OUT:
        tl.store(yi_ptr + out_offsets, acc_im * ow[None, :], mask=out_mask)


@triton.jit
def _mix_kernel(
    a_ptr,
    b_ptr,
    c_ptr,
    I,
    J,
    K,
    a_plane,
    a_m,
    a_i,
    a_k,
    b_plane,
    b_m,
    b_k,
    b_j,
    c_plane,
    c_m,
    c_i,
    c_j,
    CONJ_A: tl.constexpr,
    CONJ_B: tl.constexpr,
    BLOCK_I: tl.constexpr,
    BLOCK_J: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """Per mode ``m``: ``C[m] = A[m] B[m]`` (complex, ``(I, K) x (K, J)``), any strides.

    Each operand's real part is at ``ptr``, its imaginary part at ``ptr + plane``.
    """
    m = tl.program_id(0)
    ii = tl.program_id(1) * BLOCK_I + tl.arange(0, BLOCK_I)
    jj = tl.program_id(2) * BLOCK_J + tl.arange(0, BLOCK_J)
    acc_re = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.float32)
    acc_im = tl.zeros((BLOCK_I, BLOCK_J), dtype=tl.float32)
    for start in range(0, K, BLOCK_K):
        kk = start + tl.arange(0, BLOCK_K)
        a_off = m * a_m + ii[:, None] * a_i + kk[None, :] * a_k
        a_mask = (ii[:, None] < I) & (kk[None, :] < K)
        b_off = m * b_m + kk[:, None] * b_k + jj[None, :] * b_j
        b_mask = (kk[:, None] < K) & (jj[None, :] < J)
        ar = tl.load(a_ptr + a_off, mask=a_mask, other=0.0).to(tl.float32)
        ai = tl.load(a_ptr + a_plane + a_off, mask=a_mask, other=0.0).to(tl.float32)
        br = tl.load(b_ptr + b_off, mask=b_mask, other=0.0).to(tl.float32)
        bi = tl.load(b_ptr + b_plane + b_off, mask=b_mask, other=0.0).to(tl.float32)
        if CONJ_A:
            ai = -ai
        if CONJ_B:
            bi = -bi
        acc_re += tl.dot(ar, br, input_precision="ieee") - tl.dot(ai, bi, input_precision="ieee")
        acc_im += tl.dot(ar, bi, input_precision="ieee") + tl.dot(ai, br, input_precision="ieee")
    c_off = m * c_m + ii[:, None] * c_i + jj[None, :] * c_j
    c_mask = (ii[:, None] < I) & (jj[None, :] < J)
    tl.store(c_ptr + c_off, acc_re, mask=c_mask)
    tl.store(c_ptr + c_plane + c_off, acc_im, mask=c_mask)


@triton.jit
def _analysis_mix_kernel(
    tr_ptr,
    ti_ptr,
    w_ptr,
    y_ptr,
    freq_ptr,
    B,
    CI,
    CO,
    N,
    Q,
    K0,
    period,
    scale,
    HAS_IM: tl.constexpr,
    BLOCK_B: tl.constexpr,
    BLOCK_CI: tl.constexpr,
    BLOCK_CO: tl.constexpr,
    BLOCK_Y: tl.constexpr,
):
    """The last analysis stage fused with the per-mode mixing, one kept mode per program.

    ``X[b, i] = scale Σ_y T[b, i, y, q] e^{-2πi f_k y / n}`` (axis 0 of the spectrum of every
    other axis, ``T``: ``(B, CI, N, Q)`` planes) stays in registers and is mixed at once:
    ``Y[b, o, m] = Σ_i X[b, i] W[m, i, o]``, ``m = k Q + q``. Only ``Y`` is written.
    """
    # programs of one column q are adjacent, so the K0 programs re-reading T[..., q] find it
    # in L2 rather than in DRAM
    q = tl.program_id(0) // K0
    k = tl.program_id(0) % K0
    mode = k * Q + q
    bb = tl.program_id(1) * BLOCK_B + tl.arange(0, BLOCK_B)
    oo = tl.program_id(2) * BLOCK_CO + tl.arange(0, BLOCK_CO)
    f = tl.load(freq_ptr + k)
    acc_re = tl.zeros((BLOCK_B, BLOCK_CO), dtype=tl.float32)
    acc_im = tl.zeros((BLOCK_B, BLOCK_CO), dtype=tl.float32)
    for c0 in range(0, CI, BLOCK_CI):
        cc = c0 + tl.arange(0, BLOCK_CI)
        xr = tl.zeros((BLOCK_B, BLOCK_CI), dtype=tl.float32)
        xi = tl.zeros((BLOCK_B, BLOCK_CI), dtype=tl.float32)
        for y0 in range(0, N, BLOCK_Y):
            yy = y0 + tl.arange(0, BLOCK_Y)
            theta = ((yy * f) % period).to(tl.float32) * (6.283185307179586 / period)
            cos = tl.cos(theta)[None, None, :]
            sin = -tl.sin(theta)[None, None, :]
            offsets = ((bb[:, None, None] * CI + cc[None, :, None]) * N + yy[None, None, :]) * Q + q
            mask = (bb < B)[:, None, None] & (cc < CI)[None, :, None] & (yy < N)[None, None, :]
            t_re = tl.load(tr_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
            xr += tl.sum(t_re * cos, axis=2)
            xi += tl.sum(t_re * sin, axis=2)
            if HAS_IM:
                t_im = tl.load(ti_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
                xr -= tl.sum(t_im * sin, axis=2)
                xi += tl.sum(t_im * cos, axis=2)
        xr = xr * scale
        xi = xi * scale
        w_off = ((mode * CI + cc[:, None]) * CO + oo[None, :]) * 2
        w_mask = (cc < CI)[:, None] & (oo < CO)[None, :]
        wr = tl.load(w_ptr + w_off, mask=w_mask, other=0.0).to(tl.float32)
        wi = tl.load(w_ptr + w_off + 1, mask=w_mask, other=0.0).to(tl.float32)
        acc_re += tl.dot(xr, wr, input_precision="ieee") - tl.dot(xi, wi, input_precision="ieee")
        acc_im += tl.dot(xr, wi, input_precision="ieee") + tl.dot(xi, wr, input_precision="ieee")
    n_modes = K0 * Q
    y_off = (bb[:, None] * CO + oo[None, :]) * n_modes + mode
    y_mask = (bb < B)[:, None] & (oo < CO)[None, :]
    tl.store(y_ptr + y_off, acc_re, mask=y_mask)
    tl.store(y_ptr + B * CO * n_modes + y_off, acc_im, mask=y_mask)


# --------------------------------------------------------------------------------------------
# one DFT step and its adjoint


@dataclass(frozen=True)
class _Step:
    """A truncated DFT along one axis: the tables of :func:`_dft_kernel` and its flags."""

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


@lru_cache(maxsize=256)
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


@lru_cache(maxsize=256)
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
    _dft_kernel[grid](
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
    _mix_kernel[grid](
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
        _analysis_mix_kernel[grid](
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
    n_modes: tuple[int, ...],
    output_shape: tuple[int, ...],
) -> torch.Tensor:
    """``(B, Ci, *s)`` -> ``(B, Co, *output_shape)``: analysis, mixing, synthesis.

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
    return field.reshape(b, co, *output_shape)


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
