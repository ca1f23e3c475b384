r"""Per-mode complex channel mixing, the multiplication in a spectral convolution.

For every kept mode ``k`` the spectrum's channels are multiplied by a complex ``C_in x C_out``
matrix ``W_k``: ``ŷ_k = x̂_k W_k``. On the core's canonical layout ``(M_total, B, 2*C)`` (real |
imaginary channel halves) this is one real batched matmul with the block matrix
``[[Wr, Wi], [-Wi, Wr]]`` per mode. The bias of a spectral convolution is added to the ``k = 0``
coefficient: with forward normalisation a constant field *is* that coefficient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from opflow.spectral.fourier import n_kept

__all__ = [
    "add_bias",
    "block_weight",
    "mix_backward",
    "mix_modes",
    "zero_mode_index",
]


def block_weight(weight: torch.Tensor) -> torch.Tensor:
    """``(M, Ci, Co, 2)`` -> real block ``[[Wr, Wi], [-Wi, Wr]]`` ``(M, 2Ci, 2Co)``."""
    m, ci, co, _ = weight.shape
    w_re, w_im = weight[..., 0], weight[..., 1]
    # four strided copies into one buffer: concatenations would pass over the data twice
    block = weight.new_empty(m, 2, ci, 2, co)
    block[:, 0, :, 0] = w_re
    block[:, 0, :, 1] = w_im
    torch.neg(w_im, out=block[:, 1, :, 0])
    block[:, 1, :, 1] = w_re
    return block.view(m, 2 * ci, 2 * co)


def zero_mode_index(n_modes: Sequence[int]) -> int:
    """Position of the wavenumber ``k = 0`` among the kept modes (flattened storage order)."""
    d = len(n_modes)
    index = 0
    for a, m in enumerate(n_modes):
        half = a == d - 1
        index = index * n_kept(m, half=half) + (0 if half else m // 2)
    return index


def mix_backward(
    spec: torch.Tensor, block: torch.Tensor, grad: torch.Tensor, need_spec: bool, need_weight: bool
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Gradients of ``bmm(spec, block)`` for the spectrum and the ``(M, Ci, Co, 2)`` weight.

    The weight's is folded back from the block gradient ``G`` by hand (autograd through the
    block construction costs several times the mixing itself):
    ``dWr = G[:Ci, :Co] + G[Ci:, Co:]``, ``dWi = G[:Ci, Co:] - G[Ci:, :Co]``.
    """
    # a gradient arriving through a permuted view would send bmm down a per-mode copy path
    grad = grad.contiguous()
    grad_spec = grad_weight = None
    if need_spec:
        grad_spec = torch.bmm(grad, block.transpose(1, 2))
    if need_weight:
        g = torch.bmm(spec.transpose(1, 2), grad)
        ci, co = block.shape[1] // 2, block.shape[2] // 2
        g_re = g[:, :ci, :co] + g[:, ci:, co:]
        g_im = g[:, :ci, co:] - g[:, ci:, :co]
        grad_weight = torch.stack((g_re, g_im), dim=-1)
    return grad_spec, grad_weight


class _MixModes(torch.autograd.Function):
    """Per-mode complex mixing, the block weight's gradient folded back by hand."""

    @staticmethod
    def forward(ctx, spec, weight):
        block = block_weight(weight)
        ctx.save_for_backward(spec, block)
        return torch.bmm(spec, block)

    @staticmethod
    def backward(ctx, grad):
        spec, block = ctx.saved_tensors
        return mix_backward(spec, block, grad, *ctx.needs_input_grad)


def mix_modes(spec: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-mode complex channel mixing as one real batched matmul.

    spec: ``(M_total, B, 2*C_in)`` canonical spectrum. weight: ``(M_total, C_in, C_out, 2)``
    (real and imaginary parts). Returns ``(M_total, B, 2*C_out)``.

    With ``X = [Xr | Xi]`` the block matrix ``[[Wr, Wi], [-Wi, Wr]]`` gives
    ``[Xr Wr - Xi Wi | Xr Wi + Xi Wr]``, the complex product, in one GEMM per mode.
    """
    return _MixModes.apply(spec, weight)


def add_bias(spec: torch.Tensor, bias: torch.Tensor, n_modes: Sequence[int]) -> None:
    """Add a per-channel constant to a mixed canonical spectrum ``(M_total, B, 2*Co)``.

    A constant field is its ``k = 0`` coefficient (forward normalisation), so the bias goes into
    the small spectrum: no pass over the full-size output, forward or backward, and the same
    constant on every output grid.
    """
    spec[zero_mode_index(n_modes), :, : bias.numel()] += bias.view(-1)
