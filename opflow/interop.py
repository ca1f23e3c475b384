"""Bring models trained with neuraloperator into opflow — exactly, or not at all.

:func:`from_neuralop` converts a neuraloperator 2.0 ``FNO`` (1-, 2- or 3-D) into an
:class:`opflow.models.FNO` with the same outputs:

* converts: dense or factorized spectral weights (Tucker, CP, TT, either implementation —
  opflow keeps dense weights, so a factorized weight is reconstructed once), linear /
  soft-gating / identity FNO skips, linear / soft-gating channel-MLP skips or none, with or
  without the channel MLP, the unit-grid positional embedding or none, domain padding;
* refuses, with the reason: normalisation layers, preactivation, stabilizers, separable
  convolutions, complex data, resolution scaling, activations other than GELU, other
  embeddings, ``max_n_modes`` different from ``n_modes``, and models that are not an FNO of
  planar spectral convolutions (neuraloperator's SFNO, LocalNO, ...).

**Fail closed.** After building the opflow model the converter runs both models on the same
random input and refuses (naming the first module whose outputs differ) unless they agree to
1e-5 relative, so an option this module does not know cannot convert silently wrong.

:func:`to_neuralop` goes the other way for an opflow ``FNO`` (dense weights; the same
options, except the ``periodic`` embedding and local branches, which neuraloperator's FNO
does not have), checked the same way, so results can be confirmed in the library a reviewer
already trusts.

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

__all__ = ["from_neuralop", "to_neuralop", "PARITY_TOLERANCE"]

PARITY_TOLERANCE = 1e-5
_FACTORIZED = ("tucker", "cp", "tt")


def _unsupported(what: str, fix: str = "retrain with those options off, or convert by hand"):
    return ConfigError(
        f"Cannot convert this neuraloperator model: {what}", "an FNO opflow maps", fix
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


def _copy_skip(dst, src, kind: str | None) -> None:
    """Copy a skip connection of ``kind`` (``linear``, ``soft-gating``, ``identity``, None)."""
    if kind == "linear":
        _copy_linear(dst, src.conv)
    elif kind == "soft-gating":
        if getattr(src, "bias", None) is not None:
            raise _unsupported("a soft-gating skip with a bias")
        dst.weight.copy_(src.weight.reshape(dst.weight.shape))


def _check_convertible(model: nn.Module) -> None:
    from neuralop.layers.embeddings import GridEmbeddingND

    kind = type(model).__name__
    blocks = getattr(model, "fno_blocks", None)
    conv_kind = type(blocks.convs[0]).__name__ if blocks is not None else None
    if blocks is None or conv_kind != "SpectralConv":
        raise _unsupported(
            f"a {kind} (spectral layers: {conv_kind}); only FNOs of planar spectral "
            "convolutions convert — neuraloperator's SFNO and LocalNO are parameterised "
            "differently from opflow's (spherical transform conventions; local kernels scaled "
            "by h / h_train and a DISCO layer that does not load with torch-harmonics 0.9.3)",
            "train the model with opflow's SFNO / LocalNO",
        )
    factorization = (model.factorization or "dense").lower()
    if factorization not in ("dense", *_FACTORIZED) or model.separable:
        raise _unsupported(f"factorization={model.factorization}, separable={model.separable}")
    if blocks.norm is not None or blocks.preactivation or blocks.stabilizer is not None:
        raise _unsupported(
            f"norm={blocks.norm is not None and type(blocks.norm[0]).__name__}, "
            f"preactivation={blocks.preactivation}, stabilizer={blocks.stabilizer}"
        )
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
    if list(blocks.convs[0].max_n_modes) != list(blocks.convs[0].n_modes):
        raise _unsupported("max_n_modes different from n_modes")


def from_neuralop(model: nn.Module, backend: str = "auto") -> FNO:
    """An opflow FNO computing the same function as neuraloperator ``model`` (checked: see the
    module docstring); :class:`ConfigError` when it cannot."""
    _check_convertible(model)
    blocks = model.fno_blocks
    padding = model.domain_padding.domain_padding if model.domain_padding is not None else None
    ours = FNO(
        n_modes=tuple(model.n_modes),
        in_channels=model.in_channels,
        out_channels=model.out_channels,
        hidden_channels=model.hidden_channels,
        n_layers=model.n_layers,
        lifting_channel_ratio=model.lifting_channel_ratio,
        projection_channel_ratio=model.projection_channel_ratio,
        positional_embedding="grid" if model.positional_embedding is not None else None,
        use_channel_mlp=blocks.use_channel_mlp,
        channel_mlp_dropout=blocks.channel_mlp_dropout,
        channel_mlp_expansion=blocks.channel_mlp_expansion,
        channel_mlp_skip=blocks.channel_mlp_skip if blocks.use_channel_mlp else None,
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
            weight = weight if torch.is_tensor(weight) else weight.to_tensor()  # factorized
            d = weight.ndim - 2
            modes_first = weight.permute(*range(2, 2 + d), 0, 1).to(torch.complex64)
            block.conv.weight.copy_(torch.view_as_real(modes_first.contiguous()))
            if conv.bias is not None:
                block.conv.bias.copy_(conv.bias.reshape(block.conv.bias.shape))
            else:
                block.conv.bias = None
            if blocks.fno_skips is not None:
                _copy_skip(block.fno_skip, blocks.fno_skips[i], blocks.fno_skip)
            if blocks.use_channel_mlp:
                _copy_mlp(block.channel_mlp, blocks.channel_mlp[i])
                if blocks.channel_mlp_skips is not None:
                    skip = blocks.channel_mlp_skips[i]
                    _copy_skip(block.channel_mlp_skip, skip, blocks.channel_mlp_skip)
    _verify(model, ours)
    return ours


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _verify(theirs: nn.Module, ours: FNO) -> None:
    """Run both on one random input; refuse unless they agree, naming the first module whose
    outputs differ (lifting, block i, projection)."""
    grid = [max(8, 2 * m) for m in ours.n_modes]
    x = torch.randn(2, ours.in_channels, *grid, generator=torch.Generator().manual_seed(0))
    pairs = [("lifting", theirs.lifting, [ours.lifting])]
    pairs += [("the FNO blocks", theirs.fno_blocks, list(ours.blocks))]
    pairs += [("projection", theirs.projection, [ours.projection])]
    seen: dict[int, list[torch.Tensor]] = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o: seen.setdefault(id(m), []).append(o))
        for _, theirs_module, ours_modules in pairs
        for module in (theirs_module, *ours_modules)
    ]
    modes = [(m, m.training) for m in (theirs, ours)]
    try:
        for module, _ in modes:
            module.eval()
        with torch.no_grad():
            expected, got = theirs(x), ours(x)
    finally:
        for hook in hooks:
            hook.remove()
        for module, training in modes:
            module.train(training)
    error = _relative(got, expected)
    if error <= PARITY_TOLERANCE:
        return
    where = "the output"
    for name, theirs_module, ours_modules in pairs:
        outputs = [o for m in ours_modules for o in seen.get(id(m), [])]
        for index, (a, b) in enumerate(zip(outputs, seen.get(id(theirs_module), []))):
            if a.shape != b.shape or _relative(a, b) > PARITY_TOLERANCE:
                where = f"{name} (call {index + 1})" if len(outputs) > 1 else name
                break
        else:
            continue
        break
    raise _unsupported(
        f"the converted model's outputs differ from the original's by {error:.2g} (relative; "
        f"first in {where}): an option this converter does not map",
        "report the model's options; until then train it with opflow",
    )


def _skip_kind(skip: nn.Module | None) -> str | None:
    from opflow.layers import ChannelLinear, SoftGating

    if skip is None:
        return None
    if isinstance(skip, ChannelLinear):
        if skip.bias is not None:
            raise _unsupported("a biased linear skip", "use fno_skip: linear (no bias)")
        return "linear"
    return "soft-gating" if isinstance(skip, SoftGating) else "identity"


def to_neuralop(model: FNO) -> nn.Module:
    """A neuraloperator 2.0 ``FNO`` computing the same function as opflow ``model`` (checked
    on a random input like :func:`from_neuralop`); :class:`ConfigError` when it cannot."""
    from neuralop.models import FNO as NeuralopFNO

    block = model.blocks[0]
    embedding = model.positional_embedding
    if type(model) is not FNO or any(b.local is not None for b in model.blocks):
        raise _unsupported(f"a {type(model).__name__} (local branches)", "convert FNOs only")
    if embedding is not None and embedding.periodic:
        raise _unsupported("positional_embedding='periodic' (neuraloperator has the grid only)")
    if block.non_linearity is not F.gelu:
        raise _unsupported(f"non_linearity={block.non_linearity}")
    hidden = model.hidden_channels
    mlp = block.channel_mlp
    padding = model.domain_padding
    theirs = NeuralopFNO(
        n_modes=model.n_modes,
        in_channels=model.in_channels,
        out_channels=model.out_channels,
        hidden_channels=hidden,
        n_layers=model.n_layers,
        lifting_channel_ratio=model.lifting.fcs[0].out_channels / hidden
        if len(model.lifting.fcs) == 2
        else 0,
        projection_channel_ratio=model.projection.fcs[0].out_channels / hidden,
        positional_embedding="grid" if embedding is not None else None,
        use_channel_mlp=mlp is not None,
        channel_mlp_dropout=mlp.dropout.p if mlp is not None and mlp.dropout is not None else 0,
        channel_mlp_expansion=mlp.fcs[0].out_channels / hidden if mlp is not None else 0.5,
        channel_mlp_skip=_skip_kind(block.channel_mlp_skip) or "soft-gating",
        fno_skip=_skip_kind(block.fno_skip),
        domain_padding=list(padding.fractions) if padding is not None else None,
    )
    blocks = theirs.fno_blocks
    with torch.no_grad():
        for ours_mlp, their_mlp in ((model.lifting, theirs.lifting),
                                    (model.projection, theirs.projection)):  # fmt: skip
            _copy_mlp_back(ours_mlp, their_mlp)
        for i, ours_block in enumerate(model.blocks):
            conv = blocks.convs[i]
            weight = torch.view_as_complex(ours_block.conv.weight.contiguous())
            d = weight.ndim - 2
            conv.weight.tensor.copy_(weight.permute(d, d + 1, *range(d)))
            if ours_block.conv.bias is not None:
                conv.bias.copy_(ours_block.conv.bias.reshape(conv.bias.shape))
            else:
                conv.bias.zero_()
            _copy_skip_back(ours_block.fno_skip, blocks.fno_skips, i)
            if ours_block.channel_mlp is not None:
                _copy_mlp_back(ours_block.channel_mlp, blocks.channel_mlp[i])
                _copy_skip_back(ours_block.channel_mlp_skip, blocks.channel_mlp_skips, i)
    _verify(theirs, model)
    return theirs


def _copy_mlp_back(ours, theirs) -> None:
    if len(ours.fcs) != len(theirs.fcs):
        raise _unsupported(f"a channel MLP with {len(ours.fcs)} layers")
    for mine, conv in zip(ours.fcs, theirs.fcs):
        conv.weight.copy_(mine.weight[:, :, None])
        if conv.bias is not None:
            conv.bias.copy_(mine.bias)


def _copy_skip_back(skip: nn.Module | None, their_skips, index: int) -> None:
    kind = _skip_kind(skip)
    if their_skips is None or kind in (None, "identity"):
        return
    target = their_skips[index]
    if kind == "linear":
        target.conv.weight.copy_(skip.weight[:, :, None])
    else:
        target.weight.copy_(skip.weight.reshape(target.weight.shape))
