r"""Spectral convolution on a periodic tensor-product grid (FNO's Fourier layer).

.. math::

    y = \mathcal{F}^{-1}_{n'}\big( W_k \, \mathcal{F}_n(x)_k \big)_{k \in K} + b

``F_n`` is the truncated analysis on the input grid, ``F^{-1}_{n'}`` the synthesis on the output
grid (``output_shape``; the input grid by default), ``W_k`` a complex ``in x out`` matrix per kept
wavenumber ``k`` and ``b`` a per-channel bias. Because the weights live on wavenumbers and the
transforms on grids, the same module applies to any resolution.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from opflow.errors import ShapeError
from opflow.spectral import backends
from opflow.spectral.backends import gemm
from opflow.spectral.fourier import check_grid, n_kept
from opflow.spectral.precision import full_precision

__all__ = [
    "SpectralConv",
    "fourier_resample",
    "gemm_conv_backward",
    "gemm_conv_forward",
    "mix_modes",
    "zero_mode_index",
]


def _as_modes(n_modes: int | Sequence[int]) -> tuple[int, ...]:
    return (int(n_modes),) if isinstance(n_modes, int) else tuple(int(m) for m in n_modes)


def _block_weight(weight: torch.Tensor) -> torch.Tensor:
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


def _mix_backward(
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
        block = _block_weight(weight)
        ctx.save_for_backward(spec, block)
        return torch.bmm(spec, block)

    @staticmethod
    def backward(ctx, grad):
        spec, block = ctx.saved_tensors
        return _mix_backward(spec, block, grad, *ctx.needs_input_grad)


def mix_modes(spec: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-mode complex channel mixing as one real batched matmul.

    spec: ``(M_total, B, 2*C_in)`` canonical spectrum. weight: ``(M_total, C_in, C_out, 2)``
    (real and imaginary parts). Returns ``(M_total, B, 2*C_out)``.

    With ``X = [Xr | Xi]`` the block matrix ``[[Wr, Wi], [-Wi, Wr]]`` gives
    ``[Xr Wr - Xi Wi | Xr Wi + Xi Wr]``, the complex product, in one GEMM per mode.
    """
    return _MixModes.apply(spec, weight)


def _add_bias(spec: torch.Tensor, bias: torch.Tensor, n_modes: Sequence[int]) -> None:
    """Add a per-channel constant to a mixed canonical spectrum ``(M_total, B, 2*Co)``.

    A constant field is its ``k = 0`` coefficient (forward normalisation), so the bias goes into
    the small spectrum: no pass over the full-size output, forward or backward, and the same
    constant on every output grid.
    """
    spec[zero_mode_index(n_modes), :, : bias.numel()] += bias.view(-1)


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
    spec = gemm.analysis(x, n_modes)
    block = _block_weight(weight)
    mixed = torch.bmm(spec, block)
    if bias is not None:
        _add_bias(mixed, bias, n_modes)
    return gemm.synthesis(mixed, n_modes, weight.shape[2], output_shape), (spec, block)


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
    grad_mixed = gemm.synthesis_adjoint(grad_y, n_modes)
    co = block.shape[2] // 2
    grad_bias = grad_mixed[zero_mode_index(n_modes), :, :co].sum(0)
    grad_spec, grad_weight = _mix_backward(spec, block, grad_mixed, need_input, True)
    grad_x = None
    if need_input:
        grad_x = gemm.analysis_adjoint(grad_spec, n_modes, input_shape, add_to=add_to)
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
def _gemm_spectral_conv(x, weight, bias, n_modes, output_shape) -> torch.Tensor:
    """The gemm node, run eagerly under ``torch.compile``: its cached per-grid matrices and
    slot maps are Python-level state that dynamo would trace into many small graphs; compiled
    code around it calls it as one opaque op."""
    return _GemmSpectralConv.apply(x, weight, bias, n_modes, output_shape)


class SpectralConv(nn.Module):
    """Spectral convolution for real fields in 1, 2 or 3 dimensions.

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts of input and output.
    n_modes : int or sequence of int
        Modes kept per spatial axis, counted as in neuraloperator: ``M`` wavenumbers
        ``-(M//2) .. (M-1)//2`` on every axis but the last, ``0 .. M//2`` on the last (whose
        negative wavenumbers are conjugates). The number of spatial axes is ``len(n_modes)``.
    bias : bool
        Add a learned per-channel constant after synthesis.
    backend : {"auto", "gemm", "fft", "triton"}
        How the transforms are computed; all give the same result (see
        :func:`opflow.spectral.backends.select_backend`).
    init_std : float or "auto"
        Standard deviation of the complex weights; "auto" is ``sqrt(2 / (in + out))``.

    Shapes
    ------
    ``x``: ``(B, in_channels, n_0, ..., n_{d-1})``; returns
    ``(B, out_channels, *output_shape)`` (``output_shape`` defaults to the input grid).
    ``weight``: ``(M_0, ..., M_{d-2}, M_{d-1}//2 + 1, in_channels, out_channels, 2)``, real and
    imaginary parts in the last axis, modes first (mode-major).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        n_modes: int | Sequence[int],
        bias: bool = True,
        backend: str = "auto",
        init_std: float | str = "auto",
    ):
        super().__init__()
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.n_modes = _as_modes(n_modes)
        if not 1 <= len(self.n_modes) <= 3:
            raise ShapeError(
                f"SpectralConv got n_modes={n_modes} ({len(self.n_modes)} spatial axes)",
                "1, 2 or 3 spatial axes",
                "pass one mode count per spatial axis",
            )
        if backend != "auto":
            backends.get_backend(backend)  # fail early on a misspelt name
        self.backend = backend
        std = math.sqrt(2.0 / (in_channels + out_channels)) if init_std == "auto" else init_std
        d = len(self.n_modes)
        stored = tuple(n_kept(m, half=a == d - 1) for a, m in enumerate(self.n_modes))
        # complex normal with total variance std**2, as torch does for complex tensors
        self.weight = nn.Parameter(
            torch.randn(*stored, in_channels, out_channels, 2) * (std / math.sqrt(2.0))
        )
        self.bias = nn.Parameter(std * torch.randn(out_channels, *([1] * d))) if bias else None

    @property
    def n_dim(self) -> int:
        return len(self.n_modes)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise an :mod:`opflow.errors` error if ``x`` does not fit this layer."""
        if x.ndim != 2 + self.n_dim:
            raise ShapeError(
                f"SpectralConv with {self.n_dim} spatial axes got a tensor of shape "
                f"{tuple(x.shape)} ({x.ndim} dims)",
                f"(batch, channel, {', '.join(f'n_{a}' for a in range(self.n_dim))})",
                "add the batch/channel axes or use a model with matching n_modes",
            )
        if x.shape[1] != self.in_channels:
            raise ShapeError(
                f"SpectralConv got {x.shape[1]} channels on axis 1",
                f"{self.in_channels} input channels",
                "check the channel axis (inputs are (batch, channel, *spatial))",
            )
        check_grid(tuple(x.shape[2:]), self.n_modes)

    @full_precision
    def forward(self, x: torch.Tensor, output_shape: Sequence[int] | None = None) -> torch.Tensor:
        self.check_input(x)
        spatial = tuple(x.shape[2:])
        out_shape = spatial if output_shape is None else tuple(int(s) for s in output_shape)
        if len(out_shape) != self.n_dim or min(out_shape) < 1:
            raise ShapeError(
                f"output_shape={output_shape} does not describe a {self.n_dim}-D grid",
                f"{self.n_dim} positive sizes",
                "pass one size per spatial axis",
            )
        backend = backends.select_backend(self.backend, spatial, self.n_modes, x.device)
        weight = self.weight.reshape(-1, *self.weight.shape[-3:])
        if backend is gemm:  # one autograd node: transforms, mixing and bias by hand
            return _gemm_spectral_conv(x, weight, self.bias, self.n_modes, out_shape)
        if hasattr(backend, "spectral_conv"):  # the backend keeps the spectrum in its layout
            y = backend.spectral_conv(x, weight, self.n_modes, out_shape)
            return y if self.bias is None else y.add_(self.bias)
        spec = mix_modes(backend.analyze(x, self.n_modes), weight)
        if self.bias is not None:
            _add_bias(spec, self.bias, self.n_modes)
        return backend.synthesize(spec, self.n_modes, self.out_channels, out_shape)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, n_modes={self.n_modes}, "
            f"backend={self.backend!r}"
        )


def fourier_resample(x: torch.Tensor, output_shape: Sequence[int]) -> torch.Tensor:
    """Band-limited (trigonometric) interpolation of ``x`` ``(B, C, *s)`` onto ``output_shape``.

    Every wavenumber representable on both grids is kept; on a coarser grid the rest are
    dropped. This is a spectral convolution with the identity as weights and all modes kept.
    """
    spatial = tuple(x.shape[2:])
    out_shape = tuple(int(s) for s in output_shape)
    if out_shape == spatial:
        return x
    fft = backends.get_backend("fft")
    return fft.synthesize(fft.analyze(x, spatial), spatial, x.shape[1], out_shape)
