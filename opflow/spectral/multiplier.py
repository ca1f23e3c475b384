r"""A Fourier multiplier on every wavenumber of a periodic grid, with a hand-written backward.

For a real field ``x`` ``(B, C_in, *s)`` and a complex transfer ``T(ξ)`` ``(M, C_in, C_out)``
on ``torch.fft.rfftn``'s wavenumbers (``M`` the points of its output, row-major),

.. math::

    y = \mathcal F^{-1}\big[\hat x(\xi)\, T(\xi)\big], \qquad
    \hat x = \mathrm{rfftn}(x) / N,\quad y = \mathrm{irfftn}(\hat y) \cdot N / N,

i.e. ``irfftn(rfftn(x, norm="forward") T, norm="forward")`` (the multiplier of a circular
convolution: :class:`opflow.layers.local_branches.LocalBranches`).

The adjoint of a real Fourier multiplier is the multiplier by ``T^H``, so the input's gradient
is the same three steps on the upstream gradient ``g``; the transfer's is
``N w(ξ) x̂(ξ)^H ĝ(ξ)`` with ``ĝ = rfftn(g, norm="forward")`` and ``w = 2`` on the half axis'
interior wavenumbers (each stands for itself and its mirror image), ``1`` at 0 and Nyquist.
Autograd through the composition differentiates ``rfftn`` by a full complex transform of a
zero-padded gradient (twice the work of a real one, plus the padding) and keeps more
full-size temporaries; this node does two real transforms and two ``bmm`` s. On the CPU every
large temporary costs fresh pages, so the fewer the better (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import torch

__all__ = ["fourier_multiply", "fourier_multiply_reference"]


def _to_modes(spectrum: torch.Tensor) -> torch.Tensor:
    """``(B, C, *half)`` -> contiguous ``(M, B, C)``: per wavenumber one ``B x C`` matrix."""
    return spectrum.flatten(2).permute(2, 0, 1).contiguous()


def _apply(x: torch.Tensor, transfer: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y, x̂ as (M, B, C_in))`` for :func:`fourier_multiply`, outside autograd."""
    dims = tuple(range(2, x.ndim))
    spectrum = torch.fft.rfftn(x, dim=dims, norm="forward")
    half = spectrum.shape[2:]
    modes = _to_modes(spectrum)
    del spectrum
    mixed = torch.bmm(modes, transfer)  # (M, B, C_out)
    mixed = mixed.permute(1, 2, 0).reshape(x.shape[0], transfer.shape[2], *half)
    return torch.fft.irfftn(mixed, s=x.shape[2:], dim=dims, norm="forward"), modes


def _half_axis_weights(n_last: int, n_modes: int, like: torch.Tensor) -> torch.Tensor:
    """``w(ξ)`` over the ``M`` modes: 2 where the last (half) axis' wavenumber has a mirror
    image that rfftn leaves out, 1 at 0 and (even ``n_last``) at Nyquist; ``(M, 1, 1)``."""
    n_half = n_last // 2 + 1
    w = torch.full((n_half,), 2.0, dtype=like.real.dtype, device=like.device)
    w[0] = 1.0
    if n_last % 2 == 0:
        w[-1] = 1.0
    return w.repeat(n_modes // n_half).view(-1, 1, 1)


class _FourierMultiply(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, transfer):
        transfer = transfer.contiguous()
        y, modes = _apply(x, transfer)
        ctx.save_for_backward(modes, transfer)
        ctx.spatial = tuple(x.shape[2:])
        return y

    @staticmethod
    def backward(ctx, grad):
        modes, transfer = ctx.saved_tensors
        spatial = ctx.spatial
        dims = tuple(range(2, 2 + len(spatial)))
        grad_modes = _to_modes(torch.fft.rfftn(grad, dim=dims, norm="forward"))  # (M, B, Co)
        grad_x = grad_transfer = None
        if ctx.needs_input_grad[0]:
            mixed = torch.bmm(grad_modes, transfer.mH.resolve_conj())  # (M, B, C_in)
            half = (*spatial[:-1], spatial[-1] // 2 + 1)
            mixed = mixed.permute(1, 2, 0).reshape(grad.shape[0], -1, *half)
            grad_x = torch.fft.irfftn(mixed, s=spatial, dim=dims, norm="forward")
        if ctx.needs_input_grad[1]:
            n_points = 1
            for n in spatial:
                n_points *= n
            grad_transfer = torch.bmm(modes.mH, grad_modes)  # (M, C_in, C_out)
            weights = _half_axis_weights(spatial[-1], modes.shape[0], modes)
            grad_transfer.mul_(weights * n_points)
        return grad_x, grad_transfer


def fourier_multiply(x: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    """``irfftn(rfftn(x, norm="forward") T, norm="forward")``: ``x`` real ``(B, C_in, *s)``,
    ``transfer`` complex ``(M, C_in, C_out)`` on rfftn's ``M`` wavenumbers (row-major) ->
    ``(B, C_out, *s)``. The same numbers as :func:`fourier_multiply_reference`, with the
    backward of the module docstring."""
    if torch.compiler.is_exporting():
        return fourier_multiply_reference(x, transfer)
    return _FourierMultiply.apply(x, transfer)


def fourier_multiply_reference(x: torch.Tensor, transfer: torch.Tensor) -> torch.Tensor:
    """:func:`fourier_multiply` as a composition of torch operations (autograd's backward;
    ONNX export, which has no complex matmul, gets the product as four real ones)."""
    dims = tuple(range(2, x.ndim))
    spectrum = torch.fft.rfftn(x, dim=dims, norm="forward")
    half = spectrum.shape[2:]
    modes = spectrum.flatten(2).permute(2, 0, 1)
    if torch.compiler.is_exporting():
        s, t = torch.view_as_real(modes), torch.view_as_real(transfer)
        real = torch.bmm(s[..., 0], t[..., 0]) - torch.bmm(s[..., 1], t[..., 1])
        imag = torch.bmm(s[..., 0], t[..., 1]) + torch.bmm(s[..., 1], t[..., 0])
        mixed = torch.view_as_complex(torch.stack((real, imag), dim=-1))
    else:
        mixed = torch.bmm(modes, transfer)
    mixed = mixed.permute(1, 2, 0).reshape(x.shape[0], transfer.shape[2], *half)
    return torch.fft.irfftn(mixed, s=x.shape[2:], dim=dims, norm="forward")
