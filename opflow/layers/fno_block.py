"""The Fourier layer of FNO, LocalNO and SFNO (Li et al., ICLR 2021; neuraloperator's
``FNOBlocks``), and the activations the models take by name."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from opflow.errors import ConfigError
from opflow.layers.channel_mlp import ChannelLinear, ChannelMLP, SoftGating, make_skip
from opflow.layers.fused import FNOBlockFn
from opflow.layers.local_branches import LocalBranches
from opflow.spectral import SpectralConv, backends, fourier_resample
from opflow.spectral.precision import plain_ops_only

__all__ = ["FNOBlock", "activation"]

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gelu": F.gelu,
    "relu": F.relu,
    "tanh": torch.tanh,
    "silu": F.silu,
}


def activation(spec: str | Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """An activation function by name (``gelu``, ``relu``, ``tanh``, ``silu``) or as given."""
    if callable(spec):
        return spec
    if spec not in _ACTIVATIONS:
        raise ConfigError(
            f"Unknown activation {spec!r}", f"one of {sorted(_ACTIVATIONS)}", "fix the name"
        )
    return _ACTIVATIONS[spec]


class FNOBlock(nn.Module):
    """One Fourier layer (post-activation, neuraloperator's default)::

        y = act( K x + W x [+ local(x)] )          K: the spectral conv, W: the skip
        FNOBlock(x) = act( ChannelMLP(y) + G x )    G: the channel-MLP skip (soft gate)

    with ``act`` skipped after the last block. ``x`` is ``(B, C, *s)``; the output is
    ``(B, C, *output_shape)`` (the conv synthesises onto ``output_shape``; the skips are
    moved there by ``resample``).

    Parameters
    ----------
    conv : module, optional
        The global operator ``K`` (called ``conv(x, output_shape=...)``); by default the planar
        :class:`~opflow.spectral.SpectralConv` keeping ``n_modes``. Another geometry brings its
        own with the band-limited ``resample`` of its grids (the sphere's SFNO).
    local : module, optional
        Local branches added to ``K x`` (LocalNO's differential and integral kernels, SFNO's
        DISCO branch), called on the input grid.

    In its default configuration (GELU, a spectral conv on the ``gemm`` transforms, linear
    skip, two-layer GELU channel MLP, soft gate, no local branch, output on the input grid)
    the block runs as one autograd node with a hand-written backward
    (:class:`opflow.layers.fused.FNOBlockFn`); ``fuse = False`` (an attribute) forces the
    composition above, which gives the same values. With periodic local branches (LocalNO)
    the whole linear part ``K x + W x + local(x)`` is one Fourier multiplier on the grid: the
    conv and the skip ride along with the branches' (:meth:`LocalBranches.forward`), one pair
    of transforms for the three; ``fold = False`` computes them apart, to the same values.
    """

    def __init__(
        self,
        channels: int,
        n_modes: Sequence[int],
        non_linearity: Callable = F.gelu,
        use_channel_mlp: bool = True,
        channel_mlp_expansion: float = 0.5,
        channel_mlp_dropout: float = 0.0,
        channel_mlp_skip: str | None = "soft-gating",
        fno_skip: str | None = "linear",
        backend: str = "auto",
        conv: nn.Module | None = None,
        resample: Callable[[torch.Tensor, Sequence[int]], torch.Tensor] = fourier_resample,
        local: nn.Module | None = None,
    ):
        super().__init__()
        n_dim = len(n_modes)
        self.conv = (
            conv if conv is not None else SpectralConv(channels, channels, n_modes, backend=backend)
        )
        self.resample = resample
        self.fno_skip = make_skip(fno_skip, channels, channels, n_dim)
        self.channel_mlp = (
            ChannelMLP(
                channels,
                hidden_channels=round(channels * channel_mlp_expansion),
                dropout=channel_mlp_dropout,
            )
            if use_channel_mlp
            else None
        )
        self.channel_mlp_skip = (
            make_skip(channel_mlp_skip, channels, channels, n_dim) if use_channel_mlp else None
        )
        self.non_linearity = non_linearity
        self.local = local
        self.fuse = True
        self.fold = True

    def _is_fusable(self, x: torch.Tensor, output_shape: Sequence[int] | None) -> bool:
        conv, mlp = self.conv, self.channel_mlp
        return (
            self.fuse
            and not plain_ops_only(x)
            and self.local is None
            and self.non_linearity is F.gelu
            and isinstance(conv, SpectralConv)
            and conv.in_channels == conv.out_channels
            and isinstance(self.fno_skip, ChannelLinear)
            and self.fno_skip.bias is None
            and mlp is not None
            and mlp.is_gelu_pair
            and isinstance(self.channel_mlp_skip, SoftGating)
            and (output_shape is None or tuple(output_shape) == tuple(x.shape[2:]))
            and backends.select_backend(conv.backend, tuple(x.shape[2:]), conv.n_modes, x.device)
            is backends.gemm
        )

    def _folds_into_local(self, x: torch.Tensor, output_shape: Sequence[int] | None) -> bool:
        """Whether the conv and the skip ride along with the local branches' multiplier."""
        skip = self.fno_skip
        return (
            self.fold
            and not plain_ops_only(x)
            and isinstance(self.local, LocalBranches)
            and self.local.is_multiplier
            and type(self.conv) is SpectralConv
            and (skip is None or isinstance(skip, ChannelLinear))
            and (output_shape is None or tuple(output_shape) == tuple(x.shape[2:]))
        )

    def forward(
        self, x: torch.Tensor, output_shape: Sequence[int] | None = None, last: bool = False
    ) -> torch.Tensor:
        if self._is_fusable(x, output_shape):
            self.conv.check_input(x)
            first, second = self.channel_mlp.fcs
            return FNOBlockFn.apply(
                x.contiguous(),
                self.conv.weight,
                self.conv.bias,
                self.fno_skip.weight,
                first.weight,
                first.bias,
                second.weight,
                second.bias,
                self.channel_mlp_skip.weight,
                self.conv.n_modes,
                last,
            )
        conv = self.conv
        if self._folds_into_local(x, output_shape):
            linear = self.local(x, conv=conv, skip=self.fno_skip)
            return self.compose(x, None, output_shape, last, linear=linear)
        return self.compose(x, lambda t: conv(t, output_shape=output_shape), output_shape, last)

    def compose(
        self,
        x: torch.Tensor,
        spectral: Callable[[torch.Tensor], torch.Tensor],
        output_shape: Sequence[int] | None = None,
        last: bool = False,
        linear: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The block as a composition, with ``spectral`` as its spectral operator (the
        layer's conv; a sharded conv when the field is split across processes), or with
        ``linear``, its linear part ``K x + W x + local(x)`` already computed (one multiplier
        on a periodic grid: LocalNO)."""
        # Skips are added in place into fresh outputs (the conv's, the MLP's): on CPUs every
        # full-size temporary is a pass through memory that misses the caches.
        if linear is not None:
            y = linear
        else:
            y = spectral(x)
            y = self._add_skip(self.fno_skip, x, y, output_shape)
            if self.local is not None:
                z = self.local(x)
                if output_shape is not None and tuple(output_shape) != tuple(x.shape[2:]):
                    z = self.resample(z, output_shape)
                y = y + z
        if not last:
            y = self.non_linearity(y)
        if self.channel_mlp is not None:
            y = self.channel_mlp(y)
            y = self._add_skip(self.channel_mlp_skip, x, y, output_shape)
        if not last:
            y = self.non_linearity(y)
        return y

    def _add_skip(
        self,
        skip: nn.Module | None,
        x: torch.Tensor,
        y: torch.Tensor,
        output_shape: Sequence[int] | None,
    ) -> torch.Tensor:
        if skip is None:
            return y
        if output_shape is not None and tuple(output_shape) != tuple(x.shape[2:]):
            return y + self.resample(skip(x), output_shape)
        return skip(x, add_to=y)
