"""Bring models trained with neuraloperator into opflow.

:func:`from_neuralop` converts a neuraloperator 2.0 ``FNO`` with its default block options
(dense weights, linear FNO skip, soft-gating channel-MLP skip, grid embedding or none,
post-activation, no normalisation) into an :class:`opflow.models.FNO` with the same outputs.

Spectral weights need no reordering of wavenumbers: neuraloperator stores them fftshifted,
``(in, out, M_0, ..., M_{d-1}//2 + 1)`` with index ``i`` on a full axis meaning wavenumber
``i - M//2``, which is opflow's storage order; opflow only moves the modes first and splits
real and imaginary parts.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from opflow.errors import ConfigError
from opflow.models.fno import FNO

__all__ = ["from_neuralop"]


def _unsupported(what: str) -> ConfigError:
    return ConfigError(
        f"Cannot convert this neuraloperator FNO: {what}",
        "a dense FNO with neuraloperator's default block options",
        "retrain with the defaults, or convert the weights by hand",
    )


def _copy_linear(dst, conv1d: nn.Conv1d) -> None:
    dst.weight.data.copy_(conv1d.weight.data[:, :, 0])
    if dst.bias is not None:
        dst.bias.data.copy_(conv1d.bias.data)


def _copy_mlp(dst, src) -> None:
    if len(dst.fcs) != len(src.fcs):
        raise _unsupported(f"a channel MLP with {len(src.fcs)} layers")
    for d, s in zip(dst.fcs, src.fcs):
        _copy_linear(d, s)


def from_neuralop(model: nn.Module, backend: str = "auto") -> FNO:
    """An opflow FNO computing the same function as neuraloperator ``model``."""
    from neuralop.layers.embeddings import GridEmbeddingND

    blocks = model.fno_blocks
    if model.factorization not in (None, "dense", "Dense") or model.separable:
        raise _unsupported(f"factorization={model.factorization}, separable={model.separable}")
    if blocks.norm is not None or blocks.preactivation or blocks.stabilizer is not None:
        raise _unsupported("normalisation, preactivation or a stabilizer")
    if model.complex_data or model.resolution_scaling_factor is not None:
        raise _unsupported("complex data or resolution scaling")
    if model.non_linearity is not F.gelu:
        raise _unsupported(f"non_linearity={model.non_linearity}")
    embedding = model.positional_embedding
    if embedding is not None and not (
        isinstance(embedding, GridEmbeddingND)
        and all(tuple(b) == (0.0, 1.0) for b in embedding.grid_boundaries)
    ):
        raise _unsupported("a positional embedding other than the default unit grid")
    conv0 = blocks.convs[0]
    if list(conv0.max_n_modes) != list(conv0.n_modes):
        raise _unsupported("max_n_modes different from n_modes")
    padding = model.domain_padding.domain_padding if model.domain_padding is not None else None

    ours = FNO(
        n_modes=tuple(model.n_modes),
        in_channels=model.in_channels,
        out_channels=model.out_channels,
        hidden_channels=model.hidden_channels,
        n_layers=model.n_layers,
        lifting_channel_ratio=model.lifting_channel_ratio,
        projection_channel_ratio=model.projection_channel_ratio,
        positional_embedding="grid" if embedding is not None else None,
        use_channel_mlp=blocks.use_channel_mlp,
        channel_mlp_dropout=blocks.channel_mlp_dropout,
        channel_mlp_expansion=blocks.channel_mlp_expansion,
        channel_mlp_skip=blocks.channel_mlp_skip,
        fno_skip=blocks.fno_skip,
        domain_padding=padding,
        backend=backend,
    )
    with torch.no_grad():
        _copy_mlp(ours.lifting, model.lifting)
        _copy_mlp(ours.projection, model.projection)
        for i, block in enumerate(ours.blocks):
            conv = blocks.convs[i]
            weight = conv.weight
            weight = weight if torch.is_tensor(weight) else weight.to_tensor()
            d = weight.ndim - 2
            modes_first = weight.permute(*range(2, 2 + d), 0, 1)
            block.conv.weight.copy_(torch.view_as_real(modes_first.contiguous()))
            if conv.bias is not None:
                block.conv.bias.copy_(conv.bias.reshape(block.conv.bias.shape))
            else:
                block.conv.bias = None
            if blocks.fno_skips is not None and blocks.fno_skip == "linear":
                _copy_linear(block.fno_skip, blocks.fno_skips[i].conv)
            if blocks.use_channel_mlp:
                _copy_mlp(block.channel_mlp, blocks.channel_mlp[i])
                if blocks.channel_mlp_skip == "soft-gating":
                    block.channel_mlp_skip.weight.copy_(blocks.channel_mlp_skips[i].weight)
    return ours
