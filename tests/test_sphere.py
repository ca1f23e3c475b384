"""The sphere in the spectral core: grids, SHT (vs torch-harmonics), spherical convolution."""

from __future__ import annotations

import warnings

import pytest
import torch
import torch_harmonics as th

from opflow.errors import ConfigError, ResolutionError, ShapeError
from opflow.spectral.sphere import SphereGrid, SphericalConv, isht, sht

# grids of torch-harmonics' three kinds (sizes chosen so each resolves lmax = 16)
TH_GRIDS = [
    SphereGrid(33, 64, "equiangular"),
    SphereGrid(32, 64, "legendre-gauss"),
    SphereGrid(33, 64, "lobatto"),
]


def _band_limited(lmax: int, channels: int = 2, seed: int = 0) -> torch.Tensor:
    """Random complex coefficients ``(1, C, lmax, lmax)`` of a real field (``l >= m``, real m=0)."""
    gen = torch.Generator().manual_seed(seed)
    c = torch.randn(1, channels, lmax, lmax, 2, generator=gen, dtype=torch.float64)
    c = torch.view_as_complex(c) * torch.ones(lmax, lmax).tril()
    c[..., 0] = c[..., 0].real
    return c


@pytest.mark.parametrize("grid", TH_GRIDS, ids=lambda g: g.kind)
@pytest.mark.parametrize("backend", ["fft", "gemm"])
def test_sht_matches_torch_harmonics(grid, backend):
    x = torch.randn(2, 3, *grid.shape, generator=torch.Generator().manual_seed(1))
    lmax = grid.max_degree
    mmax = min(lmax, grid.max_order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        forward = th.RealSHT(*grid.shape, lmax, mmax, grid=grid.kind)
        inverse = th.InverseRealSHT(*grid.shape, lmax, mmax, grid=grid.kind)
    ref = forward(x)
    coeffs = sht(x, grid, lmax, mmax, backend=backend)
    assert coeffs.shape == ref.shape
    assert (coeffs - ref).abs().max() <= 1e-5 * ref.abs().max()
    field = isht(ref, grid, backend=backend)
    ref_field = inverse(ref)
    assert (field - ref_field).abs().max() <= 1e-5 * ref_field.abs().max()


def test_sht_of_a_large_batch_matches_torch_harmonics():
    """The same comparison on 1024 fields of 64x128 (8 MB of coefficients): sht and isht move
    large spectra between the batch-outer and the order-outer layouts one degree at a time."""
    grid, lmax = SphereGrid(64, 128), 32
    x = torch.randn(4, 256, *grid.shape, generator=torch.Generator().manual_seed(2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        forward = th.RealSHT(*grid.shape, lmax, lmax, grid=grid.kind)
        inverse = th.InverseRealSHT(*grid.shape, lmax, lmax, grid=grid.kind)
    ref = forward(x)
    assert ref.numel() * ref.element_size() > 4 * 2**20  # above the one-pass copy's size
    coeffs = sht(x, grid, lmax, lmax)
    assert (coeffs - ref).abs().max() <= 1e-5 * ref.abs().max()
    ref_field = inverse(ref)
    assert (isht(ref, grid) - ref_field).abs().max() <= 1e-5 * ref_field.abs().max()


def test_float32_legendre_matrices_hold_no_denormal_numbers():
    """At 128x256 (lmax 64) high orders' Legendre values near the poles fall below float32's
    normal range; the transform's float32 matrices hold zeros there instead (denormal
    operands run tens of times slower), and lose nothing the float64 ones resolve: every
    entry agrees to float32 rounding of the largest."""
    from opflow.spectral.sphere.transform import legendre_analysis, legendre_synthesis

    grid, cpu = SphereGrid(128, 256), torch.device("cpu")
    for matrices in (legendre_analysis, legendre_synthesis):
        single = matrices(grid, 64, 64, torch.float32, cpu)
        double = matrices(grid, 64, 64, torch.float64, cpu)
        nonzero = single[single != 0].abs()
        assert nonzero.min() >= torch.finfo(torch.float32).tiny
        assert (single.double() - double).abs().max() <= 1e-7 * double.abs().max()


@pytest.mark.parametrize(
    "grid", [*TH_GRIDS, SphereGrid(32, 64, "equiangular-no-poles")], ids=lambda g: g.kind
)
@pytest.mark.parametrize("backend", ["fft", "gemm"])
def test_band_limited_fields_round_trip_exactly(grid, backend):
    coeffs = _band_limited(16)
    back = sht(isht(coeffs, grid, backend=backend), grid, 16, 16, backend=backend)
    assert (back - coeffs).abs().max() <= 1e-12 * coeffs.abs().max()


def test_quadrature_weights_integrate_the_sphere():
    for kind in ("equiangular", "equiangular-no-poles", "legendre-gauss", "lobatto"):
        grid = SphereGrid(24, 48, kind)
        # sum w = 2 (area 4 pi) and the integral of cos^2 theta is 4 pi / 3
        assert abs(grid.quadrature_weights.sum().item() - 2.0) < 1e-12
        cos2 = (grid.quadrature_weights * grid.colatitudes.cos() ** 2).sum().item()
        assert abs(cos2 - 2.0 / 3.0) < 1e-12, kind


def test_unknown_grid_kind_and_too_coarse_grid_are_clear_errors():
    with pytest.raises(ResolutionError, match="Unknown sphere grid kind"):
        SphereGrid(32, 64, "healpix")
    with pytest.raises(ResolutionError, match="resolves degrees"):
        sht(torch.randn(1, 1, 17, 32), SphereGrid(17, 32), lmax=16)
    with pytest.raises(ShapeError):
        SphericalConv(2, 2, 8)(torch.randn(1, 3, 17, 32))
    with pytest.raises(ConfigError):
        SphericalConv(2, 2, 8, operator="full")


@pytest.mark.parametrize("operator", ["diagonal", "isotropic"])
@pytest.mark.parametrize("backend", ["fft", "gemm"])
def test_spherical_conv_commutes_with_a_rotation_about_the_pole(operator, backend):
    torch.manual_seed(0)
    conv = SphericalConv(3, 4, 16, operator=operator, backend=backend)
    x = torch.randn(2, 3, 33, 64)
    y = conv(x)
    y_rotated = conv(torch.roll(x, shifts=1, dims=-1))  # one grid step in longitude
    assert (y_rotated - torch.roll(y, 1, -1)).abs().max() <= 1e-5 * y.abs().max()


def test_isotropic_conv_is_rotation_equivariant_degree_by_degree():
    """A map commuting with all rotations acts as one scalar on each degree (Schur): every
    harmonic Y_l^m of a degree comes out scaled by the same K_l, with nothing else."""
    torch.manual_seed(0)
    conv = SphericalConv(1, 1, 16, operator="isotropic", anchors=6, bias=False).double()
    grid = SphereGrid(33, 64)
    k = conv.degree_weights()[:, 0, 0]
    for degree, order in [(5, 0), (5, 3), (5, 5), (11, 2), (15, 15)]:
        c = torch.zeros(1, 1, 16, 16, dtype=torch.complex128)
        c[0, 0, degree, order] = 1
        out = sht(conv(isht(c, grid)), grid, 16, 16)
        assert (out - k[degree] * c).abs().max() < 1e-12


@pytest.mark.parametrize("operator", ["diagonal", "isotropic"])
def test_same_weights_give_the_same_output_on_any_grid(operator):
    """A band-limited input sampled on grids of several kinds and sizes, the output synthesised
    on one common grid: the same function every time."""
    torch.manual_seed(0)
    conv = SphericalConv(2, 3, 16, operator=operator).double()
    coeffs = _band_limited(12, channels=2)
    common = SphereGrid(40, 80, "legendre-gauss")
    grids = [
        SphereGrid(33, 64),
        SphereGrid(65, 128),
        SphereGrid(20, 40, "legendre-gauss"),
        SphereGrid(21, 40, "lobatto"),
        SphereGrid(40, 80, "equiangular-no-poles"),
    ]
    outputs = [conv(isht(coeffs, g), output_shape=common, grid=g) for g in grids]
    scale = outputs[0].abs().max()
    for out in outputs[1:]:
        assert (out - outputs[0]).abs().max() <= 1e-10 * scale


def test_spherical_conv_gradients_match_finite_differences():
    torch.manual_seed(0)
    conv = SphericalConv(2, 2, 6, operator="diagonal").double()
    x = torch.randn(1, 2, 13, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: conv(t, output_shape=(9, 12)), (x,))


SPHERE_MODELS = [
    ("SFNO", {"hidden_channels": 8, "n_layers": 2}),
    ("SFNO", {"hidden_channels": 8, "n_layers": 2, "operator": "isotropic"}),
    ("SphericalCNN", {"hidden_channels": 8, "n_levels": 2, "anchors": 4}),
    ("SFNO", {"hidden_channels": 8, "n_layers": 2, "disco_radius": 0.3}),
]


@pytest.mark.parametrize(("name", "args"), SPHERE_MODELS, ids=lambda v: str(v))
def test_sphere_models_commute_with_a_rotation_by_one_grid_step(name, args):
    from opflow.models import build_model

    torch.manual_seed(0)
    model = build_model(name, in_channels=2, out_channels=1, lmax=16, **args).eval()
    x = torch.randn(2, 2, 33, 64)
    y = model(x)
    y_rotated = model(torch.roll(x, shifts=1, dims=-1))
    assert (y_rotated - torch.roll(y, 1, -1)).abs().max() <= 1e-5 * y.abs().max()


@pytest.mark.parametrize(("name", "args"), SPHERE_MODELS, ids=lambda v: str(v))
def test_sphere_models_evaluate_on_a_finer_grid_consistently(name, args):
    """The same weights on a band-limited input given at 33x64 and at 65x128 agree on the
    65x128 grid: only the pointwise maps see the grid, and they alias little on smooth data."""
    from opflow.models import build_model

    torch.manual_seed(0)
    model = build_model(name, in_channels=2, out_channels=1, lmax=16, **args).double().eval()
    coeffs = _band_limited(6)
    coarse, fine = SphereGrid(33, 64), SphereGrid(65, 128)
    y_coarse = model(isht(coeffs, coarse), output_shape=fine.shape)
    y_fine = model(isht(coeffs, fine))
    assert y_coarse.shape == y_fine.shape == (1, 1, 65, 128)
    # the trivial alternative: the 33x64 prediction, nearest-neighbour upsampled (nested grids:
    # fine row j and column k lie nearest coarse row round(j / 2), column round(k / 2))
    y_on_coarse = model(isht(coeffs, coarse))
    rows = torch.round(torch.arange(65) / 2).long()
    columns = torch.round(torch.arange(128) / 2).long() % 64
    nearest = y_on_coarse[..., rows, :][..., columns]
    error = ((y_coarse - y_fine).norm() / y_fine.norm()).item()
    baseline = ((nearest - y_fine).norm() / y_fine.norm()).item()
    # measured (error / baseline): SFNO 0.042 / 0.089, isotropic 0.0074 / 0.035,
    # SphericalCNN 0.036 / 0.13, with DISCO 0.0042 / 0.010
    assert error <= 0.05 and error < 0.5 * baseline


def test_disco_branch_gives_consistent_outputs_as_the_grid_is_refined():
    """The same DISCO weights (radius 0.3 rad) on a smooth field sampled at 17x32 ... 129x256:
    the outputs approach the finest grid's, error shrinking with refinement."""
    from opflow.layers.sphere import SphereDisco

    torch.manual_seed(0)
    disco = SphereDisco(2, 3, radius=0.3).double()
    coeffs = _band_limited(6)
    outputs = {n: disco(isht(coeffs, SphereGrid(n, 2 * (n - 1)))) for n in (17, 33, 65, 129)}
    finest = outputs[129]
    errors = []
    for n in (17, 33, 65):
        ref = finest[..., :: 128 // (n - 1), :: 128 // (n - 1)]  # nested equiangular grids
        errors.append(((outputs[n] - ref).norm() / ref.norm()).item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 5e-3  # measured 1.1e-3 (17x32: 6.9e-2)


def test_sfno_batch_chunks_give_the_same_outputs_and_gradients():
    from opflow.models import SFNO

    torch.manual_seed(0)
    args = dict(in_channels=1, out_channels=2, lmax=8, hidden_channels=8, n_layers=2)
    whole = SFNO(**args, chunk_bytes=None)
    chunked = SFNO(**args, chunk_bytes=1)  # one sample per chunk
    chunked.load_state_dict(whole.state_dict())
    x = torch.randn(5, 1, 17, 32)
    a, b = whole(x), chunked(x)
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(whole.named_parameters(), chunked.parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-6, msg=name)
    assert chunked(x, output_shape=(33, 64)).shape == (5, 2, 33, 64)
