"""FNO: parity with neuraloperator 2.0, registry, super-resolution output, bad input."""

from __future__ import annotations

import pytest
import torch
from neuralop.models import FNO as NeuralopFNO

from opflow.errors import ConfigError, ResolutionError, ShapeError
from opflow.interop import from_neuralop
from opflow.models import FNO, build_model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize(
    ("kwargs", "grid"),
    [
        ({"n_modes": (16, 16)}, (64, 64)),
        ({"n_modes": (12, 10)}, (48, 40)),
        ({"n_modes": (8,)}, (40,)),
        ({"n_modes": (6, 6, 4)}, (12, 12, 10)),
        ({"n_modes": (16, 16), "domain_padding": 0.25}, (64, 64)),
        ({"n_modes": (16, 16), "positional_embedding": None, "n_layers": 2}, (32, 32)),
    ],
)
def test_from_neuralop_parity(kwargs, grid):
    torch.manual_seed(0)
    theirs = NeuralopFNO(in_channels=2, out_channels=3, hidden_channels=16, **kwargs)
    ours = from_neuralop(theirs)
    x = torch.randn(3, 2, *grid)
    y_theirs, y_ours = theirs(x), ours(x)
    assert _rel(y_ours, y_theirs) < 1e-5

    upstream = torch.randn_like(y_theirs)
    y_theirs.backward(upstream)
    y_ours.backward(upstream)
    # gradients of the lifting, the skips and the projection map one to one
    assert _rel(ours.lifting.fcs[0].weight.grad, theirs.lifting.fcs[0].weight.grad[:, :, 0]) < 1e-4
    assert _rel(ours.projection.fcs[1].bias.grad, theirs.projection.fcs[1].bias.grad) < 1e-4
    for i, block in enumerate(ours.blocks):
        skip = theirs.fno_blocks.fno_skips[i].conv.weight.grad[:, :, 0]
        assert _rel(block.fno_skip.weight.grad, skip) < 1e-4


def test_registry_builds_fno_and_rejects_unknowns():
    model = build_model("FNO", n_modes=[8, 8], in_channels=1, out_channels=1, hidden_channels=8)
    assert isinstance(model, FNO)
    with pytest.raises(ConfigError, match="did you mean 'FNO'"):
        build_model("FN0", n_modes=[8, 8], in_channels=1, out_channels=1, hidden_channels=8)
    with pytest.raises(ConfigError, match="did you mean 'n_layers'"):
        build_model("FNO", n_modes=[8], in_channels=1, out_channels=1, hidden_channels=8, n_layer=2)


def test_fno_output_shape_gives_finer_and_coarser_grids():
    torch.manual_seed(0)
    model = FNO(n_modes=(8, 8), in_channels=1, out_channels=2, hidden_channels=8)
    x = torch.randn(2, 1, 32, 24)
    assert model(x, output_shape=(64, 48)).shape == (2, 2, 64, 48)
    assert model(x, output_shape=(16, 12)).shape == (2, 2, 16, 12)
    # the default output grid is the input grid
    assert model(x).shape == (2, 2, 32, 24)


def test_fno_bad_input_is_a_clear_error():
    model = FNO(n_modes=(16, 16), in_channels=1, out_channels=1, hidden_channels=8)
    with pytest.raises(ResolutionError, match="axis 0"):
        model(torch.randn(1, 1, 8, 64))
    with pytest.raises(ShapeError, match=r"\(batch, 1, 2 spatial axes\)"):
        model(torch.randn(1, 3, 32, 32))
    with pytest.raises(ShapeError):
        model(torch.randn(1, 1, 32))


def test_batch_chunking_gives_the_same_outputs_and_gradients():
    torch.manual_seed(0)
    whole = FNO(n_modes=(8, 8), in_channels=1, out_channels=2, hidden_channels=8, chunk_bytes=None)
    chunked = FNO(n_modes=(8, 8), in_channels=1, out_channels=2, hidden_channels=8, chunk_bytes=1)
    chunked.load_state_dict(whole.state_dict())
    assert chunked._chunk_size(torch.zeros(5, 1, 16, 16), 256) == 1
    x = torch.randn(5, 1, 16, 16)
    a, b = whole(x), chunked(x)
    assert _rel(b, a) < 1e-6
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(whole.named_parameters(), chunked.parameters()):
        assert _rel(q.grad, p.grad) < 1e-5, name
    assert chunked(x, output_shape=(32, 32)).shape == (5, 2, 32, 32)
