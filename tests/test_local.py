"""Local kernels: the differential kernel converges to a derivative as the grid is refined."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import outputs_and_gradients

from opflow.errors import ConfigError, ShapeError
from opflow.layers.differential import DifferentialConv
from opflow.layers.disco import LocalIntegralConv
from opflow.layers.local_branches import LocalBranches
from opflow.models import build_model


def _field(n: int, periodic: bool):
    """f = sin(2 pi x) cos(4 pi y) + 0.5 cos(2 pi (x + y)) and its gradient on an n x n grid."""
    x = torch.arange(n, dtype=torch.float64) / n if periodic else torch.linspace(0, 1, n).double()
    Y, X = torch.meshgrid(x, x, indexing="ij")
    f = torch.sin(2 * math.pi * X) * torch.cos(4 * math.pi * Y) + 0.5 * torch.cos(
        2 * math.pi * (X + Y)
    )
    fx = 2 * math.pi * torch.cos(2 * math.pi * X) * torch.cos(
        4 * math.pi * Y
    ) - math.pi * torch.sin(2 * math.pi * (X + Y))
    fy = -4 * math.pi * torch.sin(2 * math.pi * X) * torch.sin(
        4 * math.pi * Y
    ) - math.pi * torch.sin(2 * math.pi * (X + Y))
    return f[None, None], fx, fy


@pytest.mark.parametrize("boundary", ["periodic", "reflect"])
def test_differential_kernel_converges_to_its_directional_derivative(boundary):
    torch.manual_seed(0)
    ell = 0.25  # the layer computes ℓ times the derivative
    layer = DifferentialConv(1, 2, kernel_size=3, boundary=boundary, length_scale=ell).double()
    stencil = layer.stencil().detach()  # (2, 1, 3, 3), zero sum
    assert stencil.sum(dim=(2, 3)).abs().max() < 1e-12
    offsets = torch.arange(-1, 2, dtype=torch.float64)
    # the limit: sum_j w_j (d_j . grad f), d_j = (dy, dx) in grid points
    weight_y = (stencil[:, 0] * offsets[:, None]).sum(dim=(1, 2))
    weight_x = (stencil[:, 0] * offsets[None, :]).sum(dim=(1, 2))
    errors = []
    for n in (32, 64, 128):
        f, fx, fy = _field(n, periodic=boundary == "periodic")
        limit = ell * (weight_x[:, None, None] * fx + weight_y[:, None, None] * fy)
        with torch.no_grad():
            out = layer(f)[0]
        inner = (slice(None), slice(2, -2), slice(2, -2))  # reflect is one-sided at the edge
        errors.append(((out - limit)[inner].norm() / limit[inner].norm()).item())
    assert errors[0] > errors[1] > errors[2]
    assert all(math.log2(errors[i] / errors[i + 1]) > 0.9 for i in range(2)), errors
    assert errors[-1] < 0.05


def test_bad_kernel_size_is_a_config_error():
    with pytest.raises(ConfigError, match="odd kernel_size"):
        DifferentialConv(1, 1, kernel_size=4)
    with pytest.raises(ConfigError, match="boundary"):
        DifferentialConv(1, 1, boundary="neumann")
    with pytest.raises(ConfigError, match="length_scale > 0"):
        DifferentialConv(1, 1, length_scale=0.0)


def _smooth(n: int) -> torch.Tensor:
    f, _, _ = _field(n, periodic=True)
    return f


def test_local_integral_kernel_gives_consistent_outputs_across_resolutions():
    torch.manual_seed(0)
    layer = LocalIntegralConv(1, 2, radius=0.1).double()
    with torch.no_grad():
        outputs = {n: layer(_smooth(n)) for n in (32, 64, 128, 256)}
    reference = outputs[256]
    errors = []
    for n in (32, 64, 128):
        step = 256 // n
        at_points = reference[..., ::step, ::step]
        errors.append(((outputs[n] - at_points).norm() / at_points.norm()).item())
    assert errors[0] > errors[1] > errors[2]  # measured 0.025, 0.011, 0.0026
    assert errors[-1] < 0.01
    # the receptive field keeps its physical size: the stencil grows with the grid
    assert layer._basis_for((1 / 64, 1 / 64), reference).shape[-1] == 2 * 6 + 1
    assert layer._basis_for((1 / 128, 1 / 128), reference).shape[-1] == 2 * 12 + 1
    # a constant field gets the same response on every grid (quadrature-normalised basis)
    with torch.no_grad():
        ones = [layer(torch.ones(1, 1, n, n, dtype=torch.float64))[0, :, 0, 0] for n in (16, 64)]
    torch.testing.assert_close(ones[0], ones[1])


def test_local_no_builds_from_a_config_name_and_runs_at_any_resolution():
    torch.manual_seed(0)
    model = build_model(
        "LocalNO", n_modes=[8, 8], in_channels=1, out_channels=1, hidden_channels=8, n_layers=2
    )
    fno = build_model("FNO", n_modes=[8, 8], in_channels=1, out_channels=1, hidden_channels=8,
                      n_layers=2)  # fmt: skip
    branch_params = sum(p.numel() for b in model.blocks for p in b.local.parameters())
    assert branch_params == 2 * (8 * 8 * 9 + 8 * 8 * 9)  # 3x3 stencil + 9 basis weights
    assert (
        sum(p.numel() for p in model.parameters())
        == sum(p.numel() for p in fno.parameters()) + branch_params
    )
    x = torch.randn(2, 1, 32, 32)
    assert model(x).shape == (2, 1, 32, 32)
    assert model(x, output_shape=(64, 64)).shape == (2, 1, 64, 64)
    assert model(torch.randn(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    model(x).square().mean().backward()
    assert all(p.grad is not None for b in model.blocks for p in b.local.parameters())
    with pytest.raises(ConfigError, match="neither local branch"):
        build_model("LocalNO", n_modes=[8, 8], in_channels=1, out_channels=1,
                    hidden_channels=8, differential_kernel=False, disco_radius=None)  # fmt: skip
    # FNO's arguments reach LocalNO through its **fno_args, and misspelt ones are still caught
    periodic = build_model("LocalNO", n_modes=[8, 8], in_channels=1, out_channels=1,
                           hidden_channels=8, positional_embedding="periodic")  # fmt: skip
    assert periodic.positional_embedding.channels == 4
    with pytest.raises(ConfigError, match="did you mean 'positional_embedding'"):
        build_model("LocalNO", n_modes=[8, 8], in_channels=1, out_channels=1,
                    hidden_channels=8, positional_embeding="periodic")  # fmt: skip


@pytest.mark.parametrize("boundary", ["periodic", "zero"])
def test_local_no_is_the_fno_plus_its_local_branches(boundary):
    """With its branches' weights at zero a LocalNO is the FNO of its other weights, value for
    value, at any resolution; the branches then add what the layer tests check against torch's
    padded convolutions (``test_periodic_branches_as_one_fourier_multiplier_...``)."""
    torch.manual_seed(0)
    args = dict(n_modes=[8, 8], in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    model = build_model("LocalNO", boundary=boundary, **args).double()
    fno = build_model("FNO", **args).double()
    branches = {k: v for k, v in model.state_dict().items() if ".local." in k}
    assert len(branches) == 4  # a differential and a DISCO branch in each of 2 blocks
    fno.load_state_dict({k: v for k, v in model.state_dict().items() if k not in branches})
    x = torch.randn(2, 1, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        differs = (model(x) - fno(x)).norm() / fno(x).norm()
        assert differs > 5e-4, differs  # the branches take part (fresh: 1.7e-3, 2.0e-3)
        for weight in branches.values():
            weight.zero_()
        for shape in ((32, 32), (48, 40), (33, 35)):
            x = torch.randn(2, 1, *shape, dtype=torch.float64)
            torch.testing.assert_close(model(x), fno(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("local_grid", [None, (32, 32)])
def test_conv_and_skip_folded_into_the_branches_multiplier_change_nothing(local_grid):
    """On a periodic grid a LocalNO block's spectral conv and linear skip ride along with the
    local branches' Fourier multiplier (one pair of transforms for all three). Against the
    same model with each part computed on its own (``fold = False``), float64 to 1e-12:
    outputs and the gradients of the input and of every parameter, on the training grid, an
    odd grid and a finer one."""
    torch.manual_seed(0)
    model = build_model("LocalNO", n_modes=[8, 8], in_channels=1, out_channels=1,
                        hidden_channels=8, n_layers=2, local_grid=local_grid).double()  # fmt: skip
    conv_calls = []
    model.blocks[0].conv.register_forward_hook(lambda *_: conv_calls.append(1))
    model(torch.zeros(1, 1, 32, 32, dtype=torch.float64))
    assert not conv_calls  # folded: the conv module never runs

    def fold(setting: bool) -> None:
        for block in model.blocks:
            block.fold = setting

    for shape in ((32, 32), (33, 35), (48, 48)):
        x = torch.randn(2, 1, *shape, dtype=torch.float64, requires_grad=True)
        (folded, folded_grads), (apart, apart_grads) = outputs_and_gradients(
            model, x, dict(model.named_parameters()), (True, False), fold
        )
        torch.testing.assert_close(folded, apart, rtol=1e-12, atol=1e-12)
        assert folded_grads.keys() == apart_grads.keys()
        for name, want in apart_grads.items():
            torch.testing.assert_close(folded_grads[name], want, rtol=1e-10, atol=1e-12)
    assert len(conv_calls) == 3  # once per grid, computed apart


@pytest.mark.parametrize("shape", [(33, 35), (64, 64)])
def test_periodic_branches_as_one_fourier_multiplier_equal_the_padded_convolutions(shape):
    """LocalBranches' spectral path (periodic) against each branch's direct convolution."""
    torch.manual_seed(0)
    branches = LocalBranches(
        [DifferentialConv(6, 5, n_dim=2), LocalIntegralConv(6, 5, radius=0.0625)]
    ).double()
    x = torch.randn(3, 6, *shape, dtype=torch.float64, requires_grad=True)
    spectral = branches(x)
    direct = sum(branch(x) for branch in branches)
    torch.testing.assert_close(spectral, direct, rtol=1e-12, atol=1e-12)
    inputs = [x, *branches.parameters()]
    grads = torch.autograd.grad(spectral.square().sum(), inputs)
    expected = torch.autograd.grad(direct.square().sum(), inputs)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)
    # the 1-D differential branch takes the same path
    line = LocalBranches([DifferentialConv(4, 4, n_dim=1)]).double()
    u = torch.randn(2, 4, 50, dtype=torch.float64)
    torch.testing.assert_close(line(u), line[0](u), rtol=1e-12, atol=1e-12)


def test_a_kernel_wider_than_the_grid_is_a_shape_error():
    branches = LocalBranches([LocalIntegralConv(1, 1, radius=0.6)])
    with pytest.raises(ShapeError, match="at least as large as the kernel"):
        branches(torch.randn(1, 1, 8, 8))  # radius 0.6 at h = 1/8: a 9x9 stencil


def test_local_branches_on_a_reference_grid_are_resolution_invariant():
    """With reference_grid the block computes the training grid's multiplier on any grid:
    a band-limited input gives the same output at 24², 32², 64², 128² on shared points."""
    from opflow.spectral.conv import fourier_resample

    torch.manual_seed(0)
    branches = [DifferentialConv(3, 2, n_dim=2), LocalIntegralConv(3, 2, radius=0.1)]
    on_reference = LocalBranches(branches, reference_grid=(32, 32)).double()
    rebuilt = LocalBranches(branches).double()
    spectrum = torch.fft.rfft2(torch.randn(2, 3, 32, 32, dtype=torch.float64))
    spectrum[:, :, 12:-11] = 0  # keep |k| < 12: representable on every grid below
    spectrum[..., 12:] = 0
    x = torch.fft.irfft2(spectrum, s=(32, 32))
    with torch.no_grad():
        reference = on_reference(x)
        torch.testing.assert_close(reference, rebuilt(x), rtol=0, atol=0)  # same on its grid
        for n in (24, 64, 128):
            out = on_reference(fourier_resample(x, (n, n)))
            torch.testing.assert_close(out, fourier_resample(reference, (n, n)), rtol=1e-10,
                                       atol=1e-10)  # fmt: skip
        # rebuilt for the finer spacing, the stencils respond differently (measured 0.76)
        fine = rebuilt(fourier_resample(x, (128, 128)))[..., ::4, ::4]
        assert (fine - reference).norm() / reference.norm() > 0.3


def test_a_reference_grid_needs_periodic_branches():
    with pytest.raises(ConfigError, match="periodic"):
        LocalBranches([DifferentialConv(1, 1, boundary="zero")], reference_grid=(16, 16))
    model = build_model("LocalNO", n_modes=[8, 8], in_channels=1, out_channels=1,
                        hidden_channels=4, n_layers=1, local_grid=[16, 16])  # fmt: skip
    assert model.blocks[0].local.reference_grid == (16, 16)
