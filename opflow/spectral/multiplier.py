r"""A Fourier multiplier on every wavenumber of a periodic grid, spanned by basis multipliers.

For a real field ``x`` ``(B, C_in, *s)``, basis multipliers ``ψ̂_l(ξ)`` ``(M, L)`` (complex,
on ``torch.fft.rfftn``'s ``M`` wavenumbers in row-major order) and real coefficients ``θ_l``
``(L, C_in, C_out)``,

.. math::

    T(\xi) = \sum_l \hat\psi_l(\xi)\, \theta_l, \qquad
    y = \mathrm{irfftn}\big(\mathrm{rfftn}(x, \text{norm="forward"})\, T,
        \text{norm="forward"}\big),

the multiplier of a circular convolution whose kernel is a combination of fixed stencils
(:class:`opflow.layers.local_branches.LocalBranches`).

``T`` is never held whole: it is ``M x C_in x C_out`` complex — at 128², width 32, 68 MB, twice
the activations — so building it, reading it in the product and again (conjugated) in the
backward, and writing and reducing its gradient are passes through memory that cost more than
the products. The wavenumbers are taken in chunks of :data:`MODES_PER_CHUNK` instead: per
chunk ``T`` is built, applied and dropped while in cache, and in the backward rebuilt, and
its gradient folded into ``θ``'s at once (``benchmarks/RESULTS.md``).

Backward: the adjoint of a real Fourier multiplier is the multiplier by ``T^H``, so the
field's gradient is the same three steps applied to the upstream gradient ``g``; the
transfer's is ``N w(ξ) x̂(ξ)^H ĝ(ξ)`` with ``ĝ = rfftn(g, norm="forward")``, ``N`` the grid's
points and ``w = 2`` on the half axis' interior wavenumbers (each stands for itself and its
mirror image), ``1`` at 0 and Nyquist; ``θ``'s is ``Re Σ_ξ ψ̂_l(ξ)^* ∂T(ξ)``. Autograd through
the composition would also differentiate ``rfftn`` by a full complex transform of a
zero-padded gradient (twice the work of a real one, plus the padding).
"""

from __future__ import annotations

import math

import torch

__all__ = ["MODES_PER_CHUNK", "fourier_multiply", "fourier_multiply_reference"]

MODES_PER_CHUNK = 256
"""Wavenumbers per chunk: ``T``'s chunk is 2 MB at width 32 (measured: 128 to 512 alike)."""


def _to_modes(spectrum: torch.Tensor) -> torch.Tensor:
    """``(B, C, *half)`` -> contiguous ``(M, B, C)``: per wavenumber one ``B x C`` matrix."""
    return spectrum.flatten(2).permute(2, 0, 1).contiguous()


def _from_modes(modes: torch.Tensor, spatial: tuple[int, ...]) -> torch.Tensor:
    """``(M, B, C)`` spectrum -> the real field ``(B, C, *spatial)`` (``irfftn``)."""
    half = (*spatial[:-1], spatial[-1] // 2 + 1)
    spectrum = modes.permute(1, 2, 0).reshape(modes.shape[1], modes.shape[2], *half)
    dims = tuple(range(2, 2 + len(spatial)))
    return torch.fft.irfftn(spectrum, s=spatial, dim=dims, norm="forward")


def _half_axis_weights(spatial: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """``N w(ξ)`` over the ``M`` wavenumbers (row-major), real ``(M, 1, 1)``."""
    n_last = spatial[-1]
    w = torch.full((n_last // 2 + 1,), 2.0 * math.prod(spatial), dtype=like.real.dtype)
    w[0] = w[0] / 2
    if n_last % 2 == 0:
        w[-1] = w[-1] / 2
    return w.to(like.device).repeat(math.prod(spatial[:-1])).view(-1, 1, 1)


def _chunks(n_modes: int):
    return (slice(s, s + MODES_PER_CHUNK) for s in range(0, n_modes, MODES_PER_CHUNK))


class _FourierMultiply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, basis, coefficients):
        n_basis, c_in, c_out = coefficients.shape
        theta = coefficients.reshape(n_basis, c_in * c_out).to(basis.dtype)
        spatial = tuple(x.shape[2:])
        modes = _to_modes(torch.fft.rfftn(x, dim=tuple(range(2, x.ndim)), norm="forward"))
        mixed = modes.new_empty(modes.shape[0], modes.shape[1], c_out)
        for part in _chunks(modes.shape[0]):
            transfer = (basis[part] @ theta).view(-1, c_in, c_out)
            torch.bmm(modes[part], transfer, out=mixed[part])
        ctx.save_for_backward(modes, basis, theta)
        ctx.spatial, ctx.shape = spatial, coefficients.shape
        return _from_modes(mixed, spatial)

    @staticmethod
    def backward(ctx, grad):
        modes, basis, theta = ctx.saved_tensors
        spatial, (n_basis, c_in, c_out) = ctx.spatial, ctx.shape
        dims = tuple(range(2, 2 + len(spatial)))
        grad_modes = _to_modes(torch.fft.rfftn(grad, dim=dims, norm="forward"))  # (M, B, Co)
        need_x, need_coefficients = ctx.needs_input_grad[0], ctx.needs_input_grad[2]
        grad_mixed = modes.new_empty(modes.shape) if need_x else None
        grad_theta = theta.new_zeros(theta.shape) if need_coefficients else None
        weights = _half_axis_weights(spatial, modes)
        # every product below in conjugated form, so that no operand is a conjugated view
        # (torch's CPU matmuls take a slower path on those): conj(T) = conj(ψ̂) θ, and θ's
        # gradient Re(ψ̂^H ∂T) accumulated as Re(ψ̂^T conj(∂T)), conj(∂T) = x̂^T conj(N w ĝ)
        basis_conj = basis.conj().resolve_conj()
        for part in _chunks(modes.shape[0]):
            g = grad_modes[part]
            if need_x:  # ĝ T^H
                transfer_conj = (basis_conj[part] @ theta).view(-1, c_in, c_out)
                torch.bmm(g, transfer_conj.transpose(1, 2), out=grad_mixed[part])
            if need_coefficients:
                g_conj = torch.mul(g.conj(), weights[part])
                grad_transfer_conj = torch.bmm(modes[part].transpose(1, 2), g_conj)
                grad_theta.addmm_(basis[part].T, grad_transfer_conj.view(-1, c_in * c_out))
        grad_x = _from_modes(grad_mixed, spatial) if need_x else None
        if need_coefficients:
            grad_theta = grad_theta.real.view(n_basis, c_in, c_out)
        return grad_x, None, grad_theta


def fourier_multiply(
    x: torch.Tensor, basis: torch.Tensor, coefficients: torch.Tensor
) -> torch.Tensor:
    """``irfftn(rfftn(x, norm="forward") T, norm="forward")`` with ``T = basis @ θ``:
    ``x`` real ``(B, C_in, *s)``, ``basis`` complex ``(M, L)`` (constant: no gradient),
    ``coefficients`` real ``(L, C_in, C_out)`` -> ``(B, C_out, *s)``. The same numbers as
    :func:`fourier_multiply_reference`, computed as the module docstring says."""
    if torch.compiler.is_exporting():
        return fourier_multiply_reference(x, basis, coefficients)
    return _FourierMultiply.apply(x, basis, coefficients)


def fourier_multiply_reference(
    x: torch.Tensor, basis: torch.Tensor, coefficients: torch.Tensor
) -> torch.Tensor:
    """:func:`fourier_multiply` as a composition of torch operations, ``T`` built whole and
    everything differentiated by autograd (also the exported graph: real products only, as
    ONNX has no complex matmul)."""
    n_basis, c_in, c_out = coefficients.shape
    parts = torch.view_as_real(basis)  # (M, L, 2)
    flat = coefficients.reshape(n_basis, c_in * c_out)
    t_real = (parts[..., 0] @ flat).view(-1, c_in, c_out)
    t_imag = (parts[..., 1] @ flat).view(-1, c_in, c_out)
    dims = tuple(range(2, x.ndim))
    spectrum = torch.fft.rfftn(x, dim=dims, norm="forward")
    half = spectrum.shape[2:]
    modes = torch.view_as_real(spectrum.flatten(2).permute(2, 0, 1))  # (M, B, C_in, 2)
    x_real, x_imag = modes[..., 0], modes[..., 1]
    real = torch.bmm(x_real, t_real) - torch.bmm(x_imag, t_imag)
    imag = torch.bmm(x_real, t_imag) + torch.bmm(x_imag, t_real)
    mixed = torch.view_as_complex(torch.stack((real, imag), dim=-1))
    mixed = mixed.permute(1, 2, 0).reshape(x.shape[0], c_out, *half)
    return torch.fft.irfftn(mixed, s=x.shape[2:], dim=dims, norm="forward")
