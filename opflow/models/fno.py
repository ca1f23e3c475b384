"""Fourier neural operator (Li et al., ICLR 2021) on opflow's spectral core.

Same constructor names and defaults as neuraloperator 2.0's ``FNO`` where the two overlap, and
the same ``n_modes`` meaning (modes kept per axis in total; see
:class:`opflow.spectral.SpectralConv`), so models convert with
:func:`opflow.interop.from_neuralop`.

Architecture (post-activation, as neuraloperator's default; the skeleton of
:mod:`opflow.models.skeleton`, the block of :mod:`opflow.layers.fno_block`)::

    x -> [grid embedding] -> lifting MLP -> [pad] -> n_layers x FNOBlock -> [unpad] -> projection

    FNOBlock(x) = act( ChannelMLP( act(SpectralConv(x) + W_skip x) ) + G x )

with ``act`` skipped after the last block, ``W_skip`` a 1x1 linear skip and ``G`` a
per-channel soft gate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import nn

from opflow.errors import ConfigError, ShapeError
from opflow.layers import DomainPadding, GridEmbedding
from opflow.layers.fno_block import FNOBlock, activation
from opflow.models.registry import register
from opflow.models.skeleton import LiftBlocksProject, batch_chunk_size, in_batch_chunks
from opflow.spectral import check_grid

__all__ = ["FNO", "FNOBlock", "activation"]


@register("FNO")
class FNO(LiftBlocksProject):
    """Fourier neural operator for 1-, 2- or 3-D fields on periodic uniform grids.

    Parameters
    ----------
    n_modes : sequence of int
        Modes kept per spatial axis in total (neuraloperator's meaning): ``M`` wavenumbers
        ``-(M//2)..(M-1)//2`` on each axis but the last, ``0..M//2`` on the last. The number of
        spatial axes is ``len(n_modes)``.
    in_channels, out_channels : int
        Channels of the input and output functions.
    hidden_channels : int
        Width of the Fourier layers.
    n_layers : int
        Number of Fourier layers.
    lifting_channel_ratio, projection_channel_ratio : float
        Hidden width of the lifting / projection MLPs as a multiple of ``hidden_channels``.
    positional_embedding : "grid", "periodic" or None
        Append the ``[0, 1)`` grid coordinates as extra input channels (``grid``, as
        neuraloperator), or their ``sin`` and ``cos`` (``periodic``: continuous across the
        periodic seam, where the coordinates jump; the better choice on periodic data,
        ``benchmarks/RESULTS.md``).
    non_linearity : str or callable
        Activation (``gelu`` by default).
    use_channel_mlp, channel_mlp_expansion, channel_mlp_dropout, channel_mlp_skip, fno_skip
        The block options of neuraloperator's ``FNOBlocks`` (same defaults).
    domain_padding : float or sequence of float, optional
        Fraction of each axis zero-padded on both sides (for non-periodic problems).
    backend : {"auto", "gemm", "fft"}
        Spectral backend of every layer.
    chunk_bytes : int or None
        On the CPU, run the batch through the network in chunks whose hidden activations take
        at most this many bytes (at least one sample per chunk). Samples are independent, so
        the result is the same; the working set then stays in cache, and no activation is
        large enough for the C library to map fresh pages for it on every call (measured in
        ``benchmarks/RESULTS.md``). ``None`` processes the whole batch at once.
    local_branches : callable, optional
        ``local_branches(i)`` builds the local branches of block ``i`` (see
        :class:`~opflow.layers.fno_block.FNOBlock`; :class:`~opflow.models.LocalNO` passes its
        differential and integral kernels).

    Shapes
    ------
    ``forward(x, output_shape=None)``: ``x`` is ``(B, in_channels, *s)``; the result is
    ``(B, out_channels, *output_shape)``, evaluated on a finer or coarser grid when
    ``output_shape`` differs from ``s`` (the last Fourier layer synthesises onto it).
    """

    def __init__(
        self,
        n_modes: Sequence[int],
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        n_layers: int = 4,
        lifting_channel_ratio: float = 2,
        projection_channel_ratio: float = 2,
        positional_embedding: str | None = "grid",
        non_linearity: str | Callable = "gelu",
        use_channel_mlp: bool = True,
        channel_mlp_dropout: float = 0.0,
        channel_mlp_expansion: float = 0.5,
        channel_mlp_skip: str | None = "soft-gating",
        fno_skip: str | None = "linear",
        domain_padding: float | Sequence[float] | None = None,
        backend: str = "auto",
        chunk_bytes: int | None = 4 * 2**20,
        local_branches: Callable[[int], nn.Module] | None = None,
    ):
        n_modes = tuple(int(m) for m in n_modes)
        act = activation(non_linearity)
        if positional_embedding not in ("grid", "periodic", None):
            raise ConfigError(
                f"positional_embedding={positional_embedding!r} is not supported",
                "'grid', 'periodic' or None",
                "use 'grid' (append coordinates), 'periodic' (their sin and cos) or None",
            )

        def make_block(index: int) -> FNOBlock:
            return FNOBlock(
                hidden_channels,
                n_modes,
                non_linearity=act,
                use_channel_mlp=use_channel_mlp,
                channel_mlp_expansion=channel_mlp_expansion,
                channel_mlp_dropout=channel_mlp_dropout,
                channel_mlp_skip=channel_mlp_skip,
                fno_skip=fno_skip,
                backend=backend,
                local=None if local_branches is None else local_branches(index),
            )

        super().__init__(
            in_channels,
            out_channels,
            hidden_channels,
            n_layers,
            make_block,
            embedding=(
                GridEmbedding(len(n_modes), periodic=positional_embedding == "periodic")
                if positional_embedding
                else None
            ),
            lifting_channel_ratio=lifting_channel_ratio,
            projection_channel_ratio=projection_channel_ratio,
            non_linearity=act,
        )
        self.n_modes, self.n_dim = n_modes, len(n_modes)
        self.chunk_bytes = chunk_bytes
        self.domain_padding = (
            DomainPadding(domain_padding, self.n_dim)
            if domain_padding is not None and max(_as_list(domain_padding)) > 0
            else None
        )

    def kept_modes(self) -> tuple[int, ...]:
        return self.n_modes

    def forward(self, x: torch.Tensor, output_shape: Sequence[int] | None = None) -> torch.Tensor:
        if x.ndim != 2 + self.n_dim or x.shape[1] != self.in_channels:
            raise ShapeError(
                f"FNO got input of shape {tuple(x.shape)}",
                f"(batch, {self.in_channels}, {self.n_dim} spatial axes)",
                "reshape the input to (batch, channel, *spatial)",
            )
        spatial = tuple(x.shape[2:])
        check_grid(spatial, self.n_modes)
        out_spatial = spatial if output_shape is None else tuple(int(s) for s in output_shape)
        points = max(math.prod(spatial), math.prod(out_spatial))
        chunk = batch_chunk_size(x, self.chunk_bytes, self.hidden_channels * points)
        return in_batch_chunks(lambda part: self._forward(part, spatial, out_spatial), x, chunk)

    def _forward(
        self, x: torch.Tensor, spatial: tuple[int, ...], out_spatial: tuple[int, ...]
    ) -> torch.Tensor:
        x = self.lift(x)
        last_shape = None if out_spatial == spatial else out_spatial
        if self.domain_padding is not None:
            x = self.domain_padding.pad(x)
            if last_shape is not None:
                last_shape = self.domain_padding.padded_shape(out_spatial)
        x = self.run_blocks(x, last_shape)
        if self.domain_padding is not None:
            x = self.domain_padding.unpad(x, out_spatial)
        return self.projection(x)


def _as_list(value: float | Sequence[float]) -> list[float]:
    return [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
