r"""The Triton kernels of the ``triton`` backend (:mod:`opflow.spectral.backends.triton`, which
plans and launches them). Design and memory-traffic model: ``docs/triton_kernels.md``.

Three kernels do all the work, each a blocked matrix product in float32 with real and imaginary
parts in separate planes:

* :func:`dft_kernel` — a truncated DFT along one axis of a ``(P, N, Q)`` view (``N`` the
  axis being contracted), writing ``(P, K, Q)``. Its ``N x K`` matrix is never stored: every
  tile is generated in registers from two integer tables (grid positions and wavenumbers,
  reduced modulo the period so ``k j mod n`` is exact) and two weight tables,

  .. math:: A_{oc} = s \, w^{out}_o \, w^{in}_c \, e^{\pm 2\pi i (a_c b_o \bmod n) / n}.

  Analysis along the last axis reads the real field and writes only the ``M//2 + 1`` kept
  columns; along the other axes it keeps only the kept rows; synthesis contracts over the kept
  modes straight from the mixed spectrum (no zero-padded spectrum, no full inverse FFT), the
  last axis taking the Hermitian real part (``c_k`` weights of :mod:`..fourier`).
* :func:`analysis_mix_kernel` — the forward's last stage (analysis along axis 0, or the
  only axis in 1-D) fused with the per-mode channel mixing: each program computes one kept
  mode's ``(batch, Ci)`` coefficients in registers and multiplies them by that mode's
  ``Ci x Co`` weight, so the unmixed kept spectrum is never written.
* :func:`mix_kernel` — per-mode complex matrix products ``C[m] = op(A[m]) op(B[m])`` with
  arbitrary strides and optional conjugation: the mixing's two gradients without copies.
"""

from __future__ import annotations

import triton
import triton.language as tl

__all__ = ["analysis_mix_kernel", "dft_kernel", "mix_kernel"]


@triton.jit
def dft_kernel(
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
def mix_kernel(
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
def analysis_mix_kernel(
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
