"""Fourier neural operator (Li et al., ICLR 2021) on opflow's spectral core.

Same constructor names and defaults as neuraloperator 2.0's ``FNO`` where the two overlap, and
the same ``n_modes`` meaning (modes kept per axis in total; see
:class:`opflow.spectral.SpectralConv`), so models convert with
:func:`opflow.interop.from_neuralop`.

Architecture (post-activation, as neuraloperator's default)::

    x -> [grid embedding] -> lifting MLP -> [pad] -> n_layers x FNOBlock -> [unpad] -> projection

    FNOBlock(x) = act( ChannelMLP( act(SpectralConv(x) + W_skip x) ) + G x )

with ``act`` skipped after the last block, ``W_skip`` a 1x1 linear skip and ``G`` a
per-channel soft gate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from opflow.errors import ConfigError, ShapeError
from opflow.layers import (
    ChannelLinear,
    ChannelMLP,
    DomainPadding,
    GridEmbedding,
    SoftGating,
    make_skip,
)
from opflow.layers.channel_mlp import (
    gelu_mlp_backward,
    gelu_mlp_forward,
    linear,
    linear_input_grad,
    linear_weight_grad,
)
from opflow.layers.gelu import gelu, gelu_backward
from opflow.models.registry import register
from opflow.spectral import SpectralConv, backends, check_grid, fourier_resample
from opflow.spectral.conv import gemm_conv_backward, gemm_conv_forward
from opflow.spectral.precision import plain_ops_only

__all__ = ["FNO", "FNOBlock", "activation"]

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


class _FusedFNOBlock(torch.autograd.Function):
    """The default FNO block as one autograd node (same values as the composed modules).

    Inputs: ``x`` ``(B, C, *s)``; the spectral conv's weight and bias; the linear skip's
    ``W_skip``; the channel MLP's ``w1, b1, w2, b2``; the soft gate ``G``. Composed, the block's
    input feeds three branches, so autograd sums three full-size gradients, and every GELU
    backward and gate reduction allocates a full-size temporary. Here ``x``'s gradient is
    built in one buffer (the gate's share, then the skip and the spectral conv add into it),
    the GELU backwards run in place on buffers this node owns, and the MLP's input gradient
    reuses the buffer of the gate's weight-gradient product. The gain is measured in
    ``benchmarks/RESULTS.md``.
    """

    @staticmethod
    def forward(ctx, x, conv_weight, conv_bias, skip_weight, w1, b1, w2, b2, gate, n_modes, last):
        batch, channels, *spatial = x.shape
        weight = conv_weight.reshape(-1, channels, channels, 2)
        y, conv_saved = gemm_conv_forward(x, weight, conv_bias, n_modes, tuple(spatial))
        flat_x, flat_y = x.view(batch, channels, -1), y.view(batch, channels, -1)
        linear(flat_x, skip_weight, out=flat_y, accumulate=True)
        act_y = flat_y if last else gelu(flat_y)
        # the MLP's output GEMM adds into b2 + G x: one pass fewer than adding the gate after
        # (torch.addcmul with a broadcast first operand takes a slow path: 4x a mul)
        z = torch.mul(flat_x, gate.view(1, -1, 1)).add_(b2.view(1, -1, 1))
        _, hidden = gelu_mlp_forward(act_y, w1, b1, w2, None, out=z, accumulate=True)
        out = z if last else gelu(z)
        ctx.save_for_backward(flat_x, flat_y, act_y, *hidden, z, skip_weight, w1, b1, w2, gate)
        ctx.conv_saved, ctx.n_modes, ctx.last = conv_saved, n_modes, last
        ctx.shapes = (x.shape, conv_weight.shape, None if conv_bias is None else conv_bias.shape)
        return out.view(x.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        flat_x, flat_y, act_y, h, a, z, skip_weight, w1, b1, w2, gate = ctx.saved_tensors
        x_shape, weight_shape, bias_shape = ctx.shapes
        grad_out = grad_out.contiguous().view(flat_x.shape)
        # the engine's gradient is not ours to overwrite; from here on every buffer is
        grad_z = grad_out if ctx.last else gelu_backward(grad_out, z)
        need_x = ctx.needs_input_grad[0]
        # the gate's gradient sum(grad_z * x) goes through a buffer that then takes the MLP's
        # input gradient: one full-size allocation for both
        product = torch.mul(grad_z, flat_x)
        grad_gate = product.sum(dim=(0, 2)).view(gate.shape)
        grad_act_y, grad_w1, grad_b1, grad_w2, grad_b2 = gelu_mlp_backward(
            grad_z, act_y, (h, a), w1, b1, w2, input_grad_out=product
        )
        # grad_z is now only needed for the gate's share of the input gradient
        grad_x = None
        if need_x:
            gate_column = gate.view(1, -1, 1)
            grad_x = torch.mul(grad_z, gate_column) if ctx.last else grad_z.mul_(gate_column)
        grad_y = grad_act_y if ctx.last else gelu_backward(grad_act_y, flat_y, out=grad_act_y)
        grad_skip = linear_weight_grad(grad_y, flat_x)
        if need_x:
            linear_input_grad(grad_y, skip_weight, add_to=grad_x)
            grad_x = grad_x.view(x_shape)
        _, grad_weight, grad_bias = gemm_conv_backward(
            grad_y.view(x_shape), ctx.conv_saved, ctx.n_modes, x_shape, need_x, add_to=grad_x
        )
        return (
            grad_x,
            grad_weight.view(weight_shape),
            None if bias_shape is None else grad_bias.view(bias_shape),
            grad_skip,
            grad_w1,
            grad_b1,
            grad_w2,
            grad_b2,
            grad_gate,
            None,
            None,
        )


class FNOBlock(nn.Module):
    """One Fourier layer: spectral conv + linear skip, then a channel MLP + soft-gating skip.

    In its default configuration (GELU, a spectral conv on the ``gemm`` transforms, linear
    skip, two-layer GELU channel MLP, soft gate, output on the input grid) the block runs as
    one autograd node with a hand-written backward (:class:`_FusedFNOBlock`); ``fuse=False``
    (an attribute) forces the composed modules, which give the same values.
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
    ):
        super().__init__()
        n_dim = len(n_modes)
        # another geometry brings its own conv (called as conv(x, output_shape=...)) and the
        # band-limited resampling that moves the skips onto its output grid (the sphere's SFNO)
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
        # extra branches added to the spectral conv's output (LocalNO's local kernels)
        self.local: nn.Module | None = None
        self.fuse = True

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

    def forward(
        self, x: torch.Tensor, output_shape: Sequence[int] | None = None, last: bool = False
    ) -> torch.Tensor:
        if self._is_fusable(x, output_shape):
            self.conv.check_input(x)
            first, second = self.channel_mlp.fcs
            return _FusedFNOBlock.apply(
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
        # Skips are added in place into fresh outputs (the conv's, the MLP's): on CPUs every
        # full-size temporary is a pass through memory that misses the caches.
        y = self.conv(x, output_shape=output_shape)
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


@register("FNO")
class FNO(nn.Module):
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
        periodic seam, where the coordinates jump; 26% lower error for a 12-epoch FNO on
        Navier–Stokes at ν = 1e-5, ``benchmarks/RESULTS.md``).
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
    ):
        super().__init__()
        self.n_modes = tuple(int(m) for m in n_modes)
        self.n_dim = len(self.n_modes)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels, self.n_layers = hidden_channels, n_layers
        self.chunk_bytes = chunk_bytes
        act = activation(non_linearity)
        if positional_embedding not in ("grid", "periodic", None):
            raise ConfigError(
                f"positional_embedding={positional_embedding!r} is not supported",
                "'grid', 'periodic' or None",
                "use 'grid' (append coordinates), 'periodic' (their sin and cos) or None",
            )
        self.positional_embedding = (
            GridEmbedding(self.n_dim, periodic=positional_embedding == "periodic")
            if positional_embedding
            else None
        )
        lifting_in = in_channels + (
            self.positional_embedding.channels if self.positional_embedding else 0
        )
        lifting_hidden = int(lifting_channel_ratio * hidden_channels)
        self.lifting = (
            ChannelMLP(lifting_in, hidden_channels, lifting_hidden, n_layers=2, non_linearity=act)
            if lifting_hidden
            else ChannelMLP(lifting_in, hidden_channels, n_layers=1)
        )
        self.domain_padding = (
            DomainPadding(domain_padding, self.n_dim)
            if domain_padding is not None and max(_as_list(domain_padding)) > 0
            else None
        )
        self.blocks = nn.ModuleList(
            FNOBlock(
                hidden_channels,
                self.n_modes,
                non_linearity=act,
                use_channel_mlp=use_channel_mlp,
                channel_mlp_expansion=channel_mlp_expansion,
                channel_mlp_dropout=channel_mlp_dropout,
                channel_mlp_skip=channel_mlp_skip,
                fno_skip=fno_skip,
                backend=backend,
            )
            for _ in range(n_layers)
        )
        self.projection = ChannelMLP(
            hidden_channels,
            out_channels,
            int(projection_channel_ratio * hidden_channels),
            n_layers=2,
            non_linearity=act,
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
        chunk = self._chunk_size(x, max(math.prod(spatial), math.prod(out_spatial)))
        if chunk < x.shape[0]:
            return torch.cat([self._forward(part, spatial, out_spatial) for part in x.split(chunk)])
        return self._forward(x, spatial, out_spatial)

    def _chunk_size(self, x: torch.Tensor, points: int) -> int:
        if self.chunk_bytes is None or x.device.type != "cpu":
            return x.shape[0]
        per_sample = self.hidden_channels * points * x.element_size()
        return max(1, self.chunk_bytes // per_sample)

    def _forward(
        self, x: torch.Tensor, spatial: tuple[int, ...], out_spatial: tuple[int, ...]
    ) -> torch.Tensor:
        if self.positional_embedding is not None:
            x = self.positional_embedding(x)
        x = self.lifting(x)
        last_shape = None if out_spatial == spatial else out_spatial
        if self.domain_padding is not None:
            x = self.domain_padding.pad(x)
            if last_shape is not None:
                last_shape = self.domain_padding.padded_shape(out_spatial)
        for i, block in enumerate(self.blocks):
            last = i == self.n_layers - 1
            x = block(x, output_shape=last_shape if last else None, last=last)
        if self.domain_padding is not None:
            x = self.domain_padding.unpad(x, out_spatial)
        return self.projection(x)


def _as_list(value: float | Sequence[float]) -> list[float]:
    return [float(value)] if isinstance(value, int | float) else [float(v) for v in value]
