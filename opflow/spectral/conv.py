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

from opflow.errors import ShapeError
from opflow.spectral import backends
from opflow.spectral.fourier import check_grid, n_kept
from opflow.spectral.mixing import add_bias, mix_modes
from opflow.spectral.precision import full_precision

__all__ = ["SpectralConv", "fourier_resample", "mix_modes"]


def _as_modes(n_modes: int | Sequence[int]) -> tuple[int, ...]:
    return (int(n_modes),) if isinstance(n_modes, int) else tuple(int(m) for m in n_modes)


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
        if hasattr(backend, "spectral_conv"):  # a fast path of the whole layer (gemm, triton)
            return backend.spectral_conv(x, weight, self.bias, self.n_modes, out_shape)
        spec = mix_modes(backend.analyze(x, self.n_modes), weight)
        if self.bias is not None:
            add_bias(spec, self.bias, self.n_modes)
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


def even_extension(x: torch.Tensor) -> torch.Tensor:
    """``x`` ``(B, C, n_1, ..., n_d)`` mirrored about the end points of every spatial axis:
    ``(B, C, 2(n_1 - 1), ..., 2(n_d - 1))``, each axis ``f_0 .. f_{n-1}, f_{n-2} .. f_1``.

    A field sampled on a closed grid (both boundaries among its points, as Darcy data) becomes
    a continuous periodic one whose Fourier series is the field's cosine series.
    """
    for axis in range(2, x.ndim):
        n = x.shape[axis]
        if n < 2:
            raise ValueError(f"an even extension needs 2 points per axis, got {n}")
        x = torch.cat([x, x.narrow(axis, 1, n - 2).flip(axis)], dim=axis)
    return x


def cosine_resample(x: torch.Tensor, output_shape: Sequence[int]) -> torch.Tensor:
    """Band-limited interpolation of ``x`` ``(B, C, *s)`` on closed grids (both end points
    included, spacing ``1 / (s - 1)``) onto ``output_shape``: the trigonometric interpolation
    of its :func:`even_extension`, i.e. its cosine series, kept to the modes both grids hold.
    """
    out_shape = tuple(int(s) for s in output_shape)
    if out_shape == tuple(x.shape[2:]):
        return x
    extended = fourier_resample(even_extension(x), [2 * (n - 1) for n in out_shape])
    for axis, n in enumerate(out_shape, start=2):
        extended = extended.narrow(axis, 0, n)
    return extended
