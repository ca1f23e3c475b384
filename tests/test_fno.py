"""FNO: parity with neuraloperator 2.0, registry, super-resolution output, bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import outputs_and_gradients
from neuralop.models import FNO as NeuralopFNO

from opflow.errors import ConfigError, ResolutionError, ShapeError
from opflow.interop import from_neuralop
from opflow.layers import ChannelMLP
from opflow.models import FNO, FNOBlock, build_model
from opflow.models.skeleton import batch_chunk_size
from opflow.spectral import fourier_resample


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
        gate = theirs.fno_blocks.channel_mlp_skips[i].weight.grad
        assert _rel(block.channel_mlp_skip.weight.grad, gate) < 1e-4


@pytest.mark.parametrize(
    ("n_modes", "grid"), [((8,), (21,)), ((8, 6), (17, 16)), ((4, 6, 4), (9, 8, 10))]
)
@pytest.mark.parametrize("last", [False, True])
def test_fused_block_matches_the_composed_modules(n_modes, grid, last):
    """The fused FNO block (one autograd node, gemm transforms) against the same block run
    module by module on the torch.fft backend (an independent transform), in float64: output,
    the input's gradient and every parameter's gradient."""
    torch.manual_seed(0)
    block = FNOBlock(6, n_modes, backend="gemm").double()
    assert block._is_fusable(torch.zeros(1, 6, *grid), None)
    x = torch.randn(3, 6, *grid, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(3, 6, *grid, dtype=torch.float64)

    def fuse(setting: bool) -> None:
        block.fuse = setting
        block.conv.backend = "gemm" if setting else "fft"

    (y_fused, g_fused), (y_ref, g_ref) = outputs_and_gradients(
        lambda t: block(t, last=last), x, dict(block.named_parameters()), (True, False), fuse,
        upstream,
    )  # fmt: skip
    assert _rel(y_fused, y_ref) < 1e-12
    assert g_fused.keys() == g_ref.keys() and len(g_ref) == 1 + 8  # the input, 8 parameters
    for name in g_ref:
        assert _rel(g_fused[name], g_ref[name]) < 1e-12, name


@pytest.mark.parametrize("out_channels", [1, 5])
def test_gelu_mlp_node_matches_its_formula(out_channels):
    """The two-layer GELU ChannelMLP (one autograd node) against einsum and F.gelu in float64,
    with the out_channels = 1 projection's broadcast input gradient."""
    torch.manual_seed(0)
    mlp = ChannelMLP(3, out_channels, 7).double()
    assert mlp.is_gelu_pair
    x = torch.randn(2, 3, 6, 5, dtype=torch.float64, requires_grad=True)
    first, second = mlp.fcs
    params = [first.weight, first.bias, second.weight, second.bias]
    copies = [p.detach().clone().requires_grad_() for p in params]
    x_ref = x.detach().clone().requires_grad_()
    w1, b1, w2, b2 = copies
    h = torch.einsum("oi,bixy->boxy", w1, x_ref) + b1[:, None, None]
    y_ref = torch.einsum("oi,bixy->boxy", w2, F.gelu(h)) + b2[:, None, None]
    y = mlp(x)
    assert _rel(y, y_ref) < 1e-12
    upstream = torch.randn_like(y)
    y.backward(upstream)
    y_ref.backward(upstream)
    assert _rel(x.grad, x_ref.grad) < 1e-12
    for p, q in zip(params, copies):
        assert _rel(p.grad, q.grad) < 1e-12


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


def test_fno_output_shape_values_equal_the_model_run_on_that_grid():
    # for a band-limited input (and a periodic embedding, itself band-limited), predicting
    # onto another grid through output_shape is running the model on the input resampled
    # there, up to the aliasing of the pointwise GELUs on the grid the blocks run on
    torch.manual_seed(0)
    model = FNO(
        n_modes=(8, 8),
        in_channels=1,
        out_channels=2,
        hidden_channels=8,
        positional_embedding="periodic",
    ).double()
    x = fourier_resample(torch.randn(2, 1, 8, 6, dtype=torch.float64), (32, 24))
    with torch.no_grad():
        fine = model(fourier_resample(x, (64, 48)))
        up = model(x, output_shape=(64, 48))
        bilinear = F.interpolate(model(x), size=(64, 48), mode="bilinear")
        down = model(x, output_shape=(16, 12))
        coarse = model(fourier_resample(x, (16, 12)))
    assert _rel(up, fine) < 1e-4  # 1.2e-5 measured
    assert _rel(bilinear, fine) > 50 * _rel(up, fine)  # the trivial alternative: 5.4e-3
    assert _rel(down, coarse) < 3e-3  # 8.4e-4: a 16 x 12 grid aliases GELU more


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
    assert batch_chunk_size(torch.zeros(5, 1, 16, 16), chunked.chunk_bytes, 8 * 256) == 1
    x = torch.randn(5, 1, 16, 16)
    a, b = whole(x), chunked(x)
    assert _rel(b, a) < 1e-6
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(whole.named_parameters(), chunked.parameters()):
        assert _rel(q.grad, p.grad) < 1e-5, name
    assert chunked(x, output_shape=(32, 32)).shape == (5, 2, 32, 32)


def test_periodic_embedding_is_continuous_across_the_seam_and_resolution_consistent():
    from opflow.layers import GridEmbedding

    x = torch.zeros(1, 1, 16, 12, dtype=torch.float64)
    coords = {p: GridEmbedding(2, periodic=p)(x)[0, 1:] for p in (False, True)}
    assert coords[False].shape[0] == 2 and coords[True].shape[0] == 4
    # the largest step between neighbours, the seam (last point -> first) included
    steps = {p: (c.roll(-1, dims=-1) - c).abs().max().item() for p, c in coords.items()}
    assert steps[False] > 0.9  # the linear coordinate jumps from 11/12 back to 0
    assert steps[True] <= 2 * torch.pi / 12 + 1e-12  # sin/cos move by at most the angle step
    # sin^2 + cos^2 = 1 per axis, and the 2x grid sampled every other point is the same embedding
    norm = coords[True][:2] ** 2 + coords[True][2:] ** 2
    assert (norm - 1).abs().max() < 1e-12
    fine = GridEmbedding(2, periodic=True)(torch.zeros(1, 1, 32, 24, dtype=torch.float64))[0, 1:]
    assert (fine[:, ::2, ::2] - coords[True]).abs().max() < 1e-12

    model = FNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8,
                positional_embedding="periodic")  # fmt: skip
    assert model.lifting.fcs[0].weight.shape[1] == 1 + 4
    assert model(torch.randn(2, 1, 24, 24)).shape == (2, 1, 24, 24)
    with pytest.raises(ConfigError, match="'periodic'"):
        FNO(n_modes=(6, 6), in_channels=1, out_channels=1, hidden_channels=8,
            positional_embedding="sincos")  # fmt: skip


def test_channel_linear_adds_into_a_non_contiguous_target():
    """A skip added in place into a strided output (a permuted or sliced tensor, as the
    sharded layers return) must land in it, not in a reshaped copy."""
    from opflow.layers.channel_mlp import ChannelLinear

    torch.manual_seed(0)
    skip = ChannelLinear(3, 4).double()
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64)
    base = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    expected = base.transpose(2, 3) + skip(x)
    target = base.clone().transpose(2, 3)  # (2, 4, 5, 6), not contiguous
    assert not target.is_contiguous()
    torch.testing.assert_close(skip(x, add_to=target), expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(target, expected, rtol=0, atol=1e-14)
