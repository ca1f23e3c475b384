"""The skeleton FNO, LocalNO and SFNO share::

    x -> [positional embedding] -> lifting MLP -> n_layers blocks -> projection MLP

Only the blocks differ (a planar or spherical spectral conv, with or without local branches);
FNO adds domain padding around the blocks. Both run large CPU batches in chunks
(:func:`batch_chunk_size`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from opflow.layers import ChannelMLP

__all__ = ["LiftBlocksProject", "batch_chunk_size", "in_batch_chunks"]


def batch_chunk_size(x: torch.Tensor, chunk_bytes: int | None, values_per_sample: int) -> int:
    """Samples per chunk so that one chunk's hidden activations (``values_per_sample`` numbers
    of ``x``'s dtype each) take at most ``chunk_bytes`` (at least one sample); the whole batch
    where chunking does not apply.

    On the CPU, samples are independent, so chunks give the same result while the working set
    stays in cache and no activation is large enough for the C library to map fresh pages for
    it on every call (``benchmarks/RESULTS.md``: the FNO; SFNO 1.1x at 64x128, 1.4x at 128x256). Not
    on GPUs, nor in an exported graph, whose batch is dynamic.
    """
    if chunk_bytes is None or x.device.type != "cpu" or torch.compiler.is_exporting():
        return x.shape[0]
    return max(1, chunk_bytes // (values_per_sample * x.element_size()))


def in_batch_chunks(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int):
    """``fn(x)``, computed over ``x``'s batch in chunks of ``chunk`` samples."""
    if chunk < x.shape[0]:
        return torch.cat([fn(part) for part in x.split(chunk)])
    return fn(x)


class LiftBlocksProject(nn.Module):
    """``(B, in_channels, *s) -> (B, out_channels, *output_shape)`` through ``n_layers`` blocks
    of width ``hidden_channels``.

    ``make_block(i)`` builds block ``i``, called as ``block(x, output_shape=..., last=...)``:
    only the last block gets the output grid (it synthesises onto it) and skips its final
    activation. ``embedding`` (optional) appends ``embedding.channels`` coordinate channels.
    The lifting MLP has ``lifting_channel_ratio * hidden_channels`` hidden channels (one
    linear layer when that is 0), the projection ``projection_channel_ratio *
    hidden_channels``. Modules are built in the order embedding, lifting, blocks, projection
    (the order their random initial weights are drawn in).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        n_layers: int,
        make_block: Callable[[int], nn.Module],
        embedding: nn.Module | None = None,
        lifting_channel_ratio: float = 2,
        projection_channel_ratio: float = 2,
        non_linearity: Callable[[torch.Tensor], torch.Tensor] = torch.nn.functional.gelu,
    ):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.hidden_channels, self.n_layers = hidden_channels, n_layers
        self.positional_embedding = embedding
        lifting_in = in_channels + (embedding.channels if embedding is not None else 0)
        lifting_hidden = int(lifting_channel_ratio * hidden_channels)
        self.lifting = (
            ChannelMLP(
                lifting_in, hidden_channels, lifting_hidden, n_layers=2, non_linearity=non_linearity
            )
            if lifting_hidden
            else ChannelMLP(lifting_in, hidden_channels, n_layers=1)
        )
        self.blocks = nn.ModuleList(make_block(i) for i in range(n_layers))
        self.projection = ChannelMLP(
            hidden_channels,
            out_channels,
            int(projection_channel_ratio * hidden_channels),
            n_layers=2,
            non_linearity=non_linearity,
        )

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *s) -> (B, hidden_channels, *s)``."""
        if self.positional_embedding is not None:
            x = self.positional_embedding(x)
        return self.lifting(x)

    def run_blocks(self, x: torch.Tensor, output_shape: Sequence[int] | None) -> torch.Tensor:
        """The blocks in turn, the last onto ``output_shape`` (``None``: the input grid)."""
        for i, block in enumerate(self.blocks):
            last = i == self.n_layers - 1
            x = block(x, output_shape=output_shape if last else None, last=last)
        return x

    def forward(self, x: torch.Tensor, output_shape: Sequence[int] | None = None) -> torch.Tensor:
        return self.projection(self.run_blocks(self.lift(x), output_shape))
