r"""A Fourier multiplier on every wavenumber of a periodic grid, spanned by basis multipliers.

For a real field ``x`` ``(B, C_in, *s)``, basis multipliers ``ψ̂_l(ξ)`` ``(M, L)`` (complex,
on ``torch.fft.rfftn``'s ``M`` wavenumbers in row-major order; given as a :class:`SplitBasis`)
and real coefficients ``θ_l`` ``(L, C_in, C_out)``,

.. math::

    T(\xi) = \sum_l \hat\psi_l(\xi)\, \theta_l, \qquad
    y = \mathrm{irfftn}\big(\mathrm{rfftn}(x, \text{norm="forward"})\, T,
        \text{norm="forward"}\big),

the multiplier of a circular convolution whose kernel is a combination of fixed stencils
(:class:`opflow.layers.local_branches.LocalBranches`). A block's other linear maps of the
same field are multipliers too and may ride along (:class:`Extra`): a channel map ``W``
(``T += W`` at every wavenumber: the FNO's linear skip), a spectral convolution's weights on
its kept wavenumbers (``T += K(ξ)`` there) and a per-channel constant added to ``y``.

``T`` is never held whole: it is ``M x C_in x C_out`` complex — at 128², width 32, 68 MB, twice
the activations — so building it, reading it in the product and again in the
backward, and writing and reducing its gradient are passes through memory that cost more than
the products. The wavenumbers are taken in chunks of :data:`MODES_PER_CHUNK` instead: per
chunk ``T`` is built, applied and dropped while in cache, and in the backward rebuilt, and
its gradient folded into ``θ``'s at once (``benchmarks/RESULTS.md``). A chunk's temporaries
(``T``'s parts, ``±i x̂``, ``∂T``) live in buffers allocated once per call and reused chunk
after chunk, so they stay in cache (fresh ones per chunk made a LocalNO step 2-3% slower).

Every product is real. ``θ`` is real, so ``T``'s real and imaginary parts are real GEMMs
``Re ψ̂ θ`` and ``Im ψ̂ θ`` (half the flops of a complex one); each part of the basis is held
factored through its span (:class:`SplitBasis`), ``Re ψ̂ = A_re Q_re``, and ``T_re = A_re
(Q_re θ)`` is a GEMM over the span's dimension. The stencils of a local kernel come in
mirror pairs (a gradient and its reflection, the angular pieces of a disc), whose
multipliers share their real and imaginary parts up to sign, so each part spans about
half the functions: LocalNO's 18 basis multipliers span 9 real and 8 imaginary dimensions,
and building ``T`` costs half as much. The spectrum is held per wavenumber
transposed, ``x̂(ξ)^T`` ``(C_in, B)``, whose real view ``X`` ``(C_in, 2B)`` interleaves real
and imaginary parts along its rows; a real matrix acting from the left keeps that pairing,
so ``y^T = T^T x̂^T = T_re^T X + T_im^T (i X)`` are two real GEMMs (``i X``: the pairs
``(-Im, Re)``) whose output is again interleaved, the mode-major spectrum that
:func:`~opflow.spectral.half_spectrum.irfftn_mode_major` turns into the field (a complex
transform of half the length, the layout changed in the same pass).

Backward: the adjoint of a real Fourier multiplier is the multiplier by ``T^H``, so the
field's gradient is the same three steps applied to the upstream gradient ``g``
(``conj(T) ĝ^T = T_re G + T_im (-i G)``); the transfer's is ``N w(ξ) x̂(ξ)^H ĝ(ξ)`` with
``ĝ = rfftn(g, norm="forward")``, ``N`` the grid's points and ``w = 2`` on the half axis'
interior wavenumbers (each stands for itself and its mirror image), ``1`` at 0 and Nyquist —
as real row products ``Re = X G^T``, ``Im = X (-i G)^T``; the factored coefficients' are
``Σ_ξ A_re(ξ)^T Re ∂T(ξ)`` and ``Σ_ξ A_im(ξ)^T Im ∂T(ξ)``, real GEMMs over the wavenumbers
(``θ``'s, through ``Q``, by autograd). Autograd through the
composition would also differentiate ``rfftn`` by a full complex transform of a zero-padded
gradient (twice the work of a real one, plus the padding).
"""

from __future__ import annotations

import dataclasses
import math

import torch

from opflow.spectral.fourier import kept_frequencies
from opflow.spectral.half_spectrum import irfftn_mode_major

__all__ = [
    "MODES_PER_CHUNK",
    "Extra",
    "SplitBasis",
    "fourier_multiply",
    "fourier_multiply_reference",
    "kept_rows",
]

MODES_PER_CHUNK = 256
"""Wavenumbers per chunk: ``T``'s chunk is 2 MB at width 32. With the chunk's buffers reused,
256 measured fastest for LocalNO at 64² (64 / 128 / 512: 9% / 4% / 2% slower a step)."""


def _to_modes(spectrum: torch.Tensor) -> torch.Tensor:
    """``(B, C, *half)`` -> contiguous ``(M, C, B)``: per wavenumber the transposed ``C x B``
    matrix ``x̂(ξ)^T``, whose real view ``(C, 2B)`` (real and imaginary parts interleaved along
    its rows) is an operand of real GEMMs (module docstring)."""
    return spectrum.flatten(2).permute(2, 1, 0).contiguous()


def _real_rows(modes: torch.Tensor) -> torch.Tensor:
    """``(M, C, B)`` complex -> its real view ``(M, C, 2B)`` (no copy)."""
    return torch.view_as_real(modes).flatten(2)


def _half_axis_weights(spatial: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """``N w(ξ)`` over the ``M`` wavenumbers (row-major), real ``(M, 1)``."""
    n_last = spatial[-1]
    w = torch.full((n_last // 2 + 1,), 2.0 * math.prod(spatial), dtype=like.dtype)
    w[0] = w[0] / 2
    if n_last % 2 == 0:
        w[-1] = w[-1] / 2
    return w.to(like.device).repeat(math.prod(spatial[:-1])).view(-1, 1)


def _chunks(n_modes: int):
    return (slice(s, s + MODES_PER_CHUNK) for s in range(0, n_modes, MODES_PER_CHUNK))


def kept_rows(n_modes: tuple[int, ...], grid_shape: tuple[int, ...]) -> list[int]:
    """Positions among ``rfftn``'s ``M`` wavenumbers (row-major) of a spectral convolution's
    kept wavenumbers, in its weight's storage order (:func:`~opflow.spectral.fourier.
    kept_frequencies` per axis, the last one the half axis)."""
    last = len(n_modes) - 1
    axes = [kept_frequencies(m, half=a == last) for a, m in enumerate(n_modes)]
    sizes = (*grid_shape[:-1], grid_shape[-1] // 2 + 1)
    rows = [0]
    for a, frequencies in enumerate(axes):
        rows = [r * sizes[a] + k % grid_shape[a] for r in rows for k in frequencies]
    return rows


@dataclasses.dataclass
class Extra:
    """Linear maps that ride along with the basis multiplier (all optional):
    ``channel`` real ``(C_in, C_out)`` added to ``T`` at every wavenumber; ``modes`` real
    ``(K, C_in, C_out, 2)`` (real, imaginary) added at the wavenumbers ``rows`` (K positions
    among rfftn's, :func:`kept_rows`); ``bias`` real ``(C_out,)`` added to the output."""

    channel: torch.Tensor | None = None
    modes: torch.Tensor | None = None
    rows: list[int] | None = None
    bias: torch.Tensor | None = None


@dataclasses.dataclass(frozen=True)
class SplitBasis:
    """Basis multipliers ``ψ̂`` ``(M, L)`` held as their real and imaginary parts, each factored
    through its column span: ``Re ψ̂ = real @ real_map``, ``Im ψ̂ = imag @ imag_map`` with
    ``real`` ``(M, R)``, ``real_map`` ``(R, L)`` (orthonormal rows), ``imag`` ``(M, I)``,
    ``imag_map`` ``(I, L)``; ``R`` and ``I`` the parts' ranks, at most ``L`` each."""

    real: torch.Tensor
    imag: torch.Tensor
    real_map: torch.Tensor
    imag_map: torch.Tensor

    @classmethod
    def of(cls, basis: torch.Tensor) -> SplitBasis:
        """Factor complex ``basis`` ``(M, L)`` (by SVD, in its precision: build it in float64
        and cast with :meth:`to`); directions whose singular value is below ``max(M, L) ε``
        of the largest (rounding of zero) are dropped, and a function whose part is zero gets
        a zero column in the map (not rounding: its coefficient's gradient stays 0)."""
        parts = []
        for part in (basis.real, basis.imag):
            u, s, vh = torch.linalg.svd(part, full_matrices=False)
            eps = torch.finfo(part.dtype).eps
            rank = int((s > max(part.shape) * eps * s[0]).sum()) if s.numel() else 0
            part_map = vh[:rank] * (part != 0).any(dim=0)
            parts.append((u[:, :rank] * s[:rank], part_map))
        (real, real_map), (imag, imag_map) = parts
        return cls(*(t.contiguous() for t in (real, imag, real_map, imag_map)))

    def to(self, dtype: torch.dtype, device: torch.device | str) -> SplitBasis:
        """The factors in ``dtype`` on ``device``."""
        return SplitBasis(*(t.to(dtype=dtype, device=device) for t in dataclasses.astuple(self)))

    def multipliers(self) -> torch.Tensor:
        """``ψ̂`` ``(M, L)`` complex, rebuilt from its factors."""
        return torch.complex(self.real @ self.real_map, self.imag @ self.imag_map)


def _transfer(coefficients: tuple, part: slice, c_in: int, out: torch.Tensor) -> list:
    """``T``'s real and imaginary parts on the wavenumbers ``part``, each ``(P, C_in, C_out)``:
    ``A_re θ_re`` and ``A_im θ_im``, ``coefficients = ((A_re, θ_re), (A_im, θ_im))``, written
    into ``out`` ``(2, ≥ P, C_in·C_out)``."""
    parts = []
    for buffer, (a, theta) in zip(out, coefficients):
        rows = a[part]
        t = torch.mm(rows, theta, out=buffer[: rows.shape[0]])
        parts.append(t.view(-1, c_in, theta.shape[1] // c_in))
    return parts


def _times(modes: torch.Tensor, factor: complex, out: torch.Tensor) -> torch.Tensor:
    """``factor x̂`` (``±i``) written into ``out``, as a real ``(P, C, 2B)`` operand: for ``i``
    the pairs ``(-Im, Re)``, for ``-i`` ``(Im, -Re)``."""
    return _real_rows(torch.mul(modes, factor, out=out[: modes.shape[0]]))


class _FourierMultiply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, real, imag, theta_real, theta_imag, c_in, modes_weight, bias, rows):
        spatial, c_out = tuple(x.shape[2:]), theta_real.shape[1] // c_in
        modes = _to_modes(torch.fft.rfftn(x, dim=tuple(range(2, x.ndim)), norm="forward"))
        mixed = modes.new_empty(modes.shape[0], c_out, modes.shape[2])  # (M, Co, B)
        x_rows, y_rows = _real_rows(modes), _real_rows(mixed)
        coefficients = ((real, theta_real), (imag, theta_imag))
        size = min(MODES_PER_CHUNK, modes.shape[0])  # a chunk's temporaries, reused (in cache)
        t_buf = theta_real.new_empty(2, size, theta_real.shape[1])
        i_buf = modes.new_empty(size, *modes.shape[1:])
        for part in _chunks(modes.shape[0]):
            # y^T = T^T x̂^T = T_re^T x̂^T + T_im^T (i x̂^T), every product real
            t_real, t_imag = _transfer(coefficients, part, c_in, t_buf)
            torch.bmm(t_real.transpose(1, 2), x_rows[part], out=y_rows[part])
            y_rows[part].baddbmm_(t_imag.transpose(1, 2), _times(modes[part], 1j, i_buf))
        extra, index = None, None
        if modes_weight is not None:  # a few wavenumbers: gathered, mixed, added back
            extra = torch.view_as_complex(modes_weight)
            index = torch.tensor(rows, device=x.device)
            mixed.index_add_(0, index, torch.bmm(extra.transpose(1, 2), modes[index]))
        if bias is not None:  # a constant field is the k = 0 coefficient (forward norm)
            mixed[0] += bias.view(-1, 1)
        ctx.save_for_backward(modes, real, imag, theta_real, theta_imag, extra, index)
        ctx.spatial, ctx.c_in = spatial, c_in
        return irfftn_mode_major(mixed, spatial)

    @staticmethod
    def backward(ctx, grad):
        modes, real, imag, theta_real, theta_imag, extra, index = ctx.saved_tensors
        spatial, c_in = ctx.spatial, ctx.c_in
        dims = tuple(range(2, 2 + len(spatial)))
        grad_modes = _to_modes(torch.fft.rfftn(grad, dim=dims, norm="forward"))  # (M, Co, B)
        need_x, _, _, need_real, need_imag, _, need_extra, need_bias, _ = ctx.needs_input_grad
        grad_mixed = modes.new_empty(modes.shape) if need_x else None
        grad_real = theta_real.new_zeros(theta_real.shape) if need_real else None
        grad_imag = theta_imag.new_zeros(theta_imag.shape) if need_imag else None
        weights = _half_axis_weights(spatial, theta_real)  # N w(ξ): folded into the factors
        weighted_real, weighted_imag = real * weights, imag * weights
        coefficients = ((real, theta_real), (imag, theta_imag))
        x_rows, g_rows = _real_rows(modes), _real_rows(grad_modes)
        if grad_mixed is not None:
            gx_rows = _real_rows(grad_mixed)
        size = min(MODES_PER_CHUNK, modes.shape[0])  # a chunk's temporaries, reused (in cache)
        t_buf = theta_real.new_empty(2, size, theta_real.shape[1])
        minus_i_buf = grad_modes.new_empty(size, *grad_modes.shape[1:])
        dt_buf = theta_real.new_empty(size, c_in, grad_modes.shape[1])  # Re ∂T, then Im ∂T
        for part in _chunks(modes.shape[0]) if need_x or need_real or need_imag else ():
            p = min(part.stop, modes.shape[0]) - part.start
            if need_x or need_imag:
                g_times_minus_i = _times(grad_modes[part], -1j, minus_i_buf)  # -i ĝ^T
            if need_x:  # ĝ T^H, transposed: conj(T) ĝ^T = T_re ĝ^T + T_im (-i ĝ^T)
                t_real, t_imag = _transfer(coefficients, part, c_in, t_buf)
                torch.bmm(t_real, g_rows[part], out=gx_rows[part])
                gx_rows[part].baddbmm_(t_imag, g_times_minus_i)
            # ∂T = x̂^H ĝ as real row products: Re ∂T = x̂^T·ĝ^T, Im ∂T = x̂^T·(-i ĝ^T);
            # the factored coefficients' gradients Σ_ξ N w A(ξ)^T ∂T(ξ), part by part
            dt = dt_buf[:p]
            if need_real:
                torch.bmm(x_rows[part], g_rows[part].transpose(1, 2), out=dt)
                grad_real.addmm_(weighted_real[part].T, dt.view(p, -1))
            if need_imag:
                torch.bmm(x_rows[part], g_times_minus_i.transpose(1, 2), out=dt)
                grad_imag.addmm_(weighted_imag[part].T, dt.view(p, -1))
        grad_extra = None
        if extra is not None:
            g = grad_modes[index]  # (K, Co, B)
            if need_x:
                extra_conj = extra.conj().resolve_conj()
                grad_mixed.index_add_(0, index, torch.bmm(extra_conj, g))
            if need_extra:  # N w x̂^H ĝ = conj(x̂^T conj(N w ĝ))
                g_conj = torch.mul(g.conj(), weights[index].view(-1, 1, 1))
                grad_extra = torch.bmm(modes[index], g_conj.transpose(1, 2)).conj()
                grad_extra = torch.view_as_real(grad_extra.resolve_conj())
        grad_x = irfftn_mode_major(grad_mixed, spatial) if need_x else None
        grad_bias = None
        if need_bias:  # through the k = 0 coefficient: N Re ĝ_0, summed over the batch
            grad_bias = grad_modes[0].real.sum(dim=1) * math.prod(spatial)
        return grad_x, None, None, grad_real, grad_imag, None, grad_extra, grad_bias, None


def fourier_multiply(
    x: torch.Tensor, basis: SplitBasis, coefficients: torch.Tensor, extra: Extra | None = None
) -> torch.Tensor:
    """``irfftn(rfftn(x, norm="forward") T, norm="forward")`` with ``T = ψ̂ θ`` (plus the
    ``extra`` maps): ``x`` real ``(B, C_in, *s)``, ``basis`` the multipliers ``ψ̂`` ``(M, L)``
    factored (constant: no gradient), ``coefficients`` ``θ`` real ``(L, C_in, C_out)`` ->
    ``(B, C_out, *s)``. The same numbers as :func:`fourier_multiply_reference`, computed as
    the module docstring says."""
    extra = extra or Extra()
    if torch.compiler.is_exporting():
        return fourier_multiply_reference(x, basis, coefficients, extra)
    n_basis, c_in, c_out = coefficients.shape
    theta = coefficients.reshape(n_basis, c_in * c_out)
    real, theta_real = basis.real, basis.real_map @ theta
    if extra.channel is not None:  # a constant multiplier: one more real factor, ψ̂ = 1
        real = torch.cat((real, real.new_ones(real.shape[0], 1)), dim=1)
        theta_real = torch.cat((theta_real, extra.channel.reshape(1, -1)))
    return _FourierMultiply.apply(
        x, real, basis.imag, theta_real, basis.imag_map @ theta, c_in,
        extra.modes, extra.bias, extra.rows,
    )  # fmt: skip


def fourier_multiply_reference(
    x: torch.Tensor, basis: SplitBasis, coefficients: torch.Tensor, extra: Extra | None = None
) -> torch.Tensor:
    """:func:`fourier_multiply` as a composition of torch operations, ``Re ψ̂`` and ``Im ψ̂``
    rebuilt from their factors, ``T`` built whole and everything differentiated by autograd
    (also the exported graph: real products only, as ONNX has no complex matmul)."""
    extra = extra or Extra()
    n_basis, c_in, c_out = coefficients.shape
    flat = coefficients.reshape(n_basis, c_in * c_out)
    t_real = (basis.real @ basis.real_map @ flat).view(-1, c_in, c_out)
    t_imag = (basis.imag @ basis.imag_map @ flat).view(-1, c_in, c_out)
    if extra.channel is not None:
        t_real = t_real + extra.channel
    if extra.modes is not None:
        rows = torch.tensor(extra.rows, device=x.device)
        t_real = t_real.index_add(0, rows, extra.modes[..., 0])
        t_imag = t_imag.index_add(0, rows, extra.modes[..., 1])
    dims = tuple(range(2, x.ndim))
    spectrum = torch.fft.rfftn(x, dim=dims, norm="forward")
    half = spectrum.shape[2:]
    modes = torch.view_as_real(spectrum.flatten(2).permute(2, 0, 1))  # (M, B, C_in, 2)
    x_real, x_imag = modes[..., 0], modes[..., 1]
    real = torch.bmm(x_real, t_real) - torch.bmm(x_imag, t_imag)
    imag = torch.bmm(x_real, t_imag) + torch.bmm(x_imag, t_real)
    mixed = torch.view_as_complex(torch.stack((real, imag), dim=-1))
    mixed = mixed.permute(1, 2, 0).reshape(x.shape[0], c_out, *half)
    y = torch.fft.irfftn(mixed, s=x.shape[2:], dim=dims, norm="forward")
    return y if extra.bias is None else y + extra.bias.view(-1, *[1] * (x.ndim - 2))
