"""The spectral core against a float64 direct-DFT reference, and its errors on bad input."""

from __future__ import annotations

import math

import pytest
import torch
from spectral_reference import direct_spectral_conv

from opflow.errors import OpflowError, ResolutionError, ShapeError
from opflow.spectral import SpectralConv, fourier_resample, get_backend
from opflow.spectral.axis import reference_analysis, reference_synthesis, to_canonical

TOL = 1e-5

# (grid, n_modes, output grid): 1-D/2-D/3-D, odd and even sizes, modes at the Nyquist edge,
# up- and down-sampling along every axis (alone and together)
CASES = [
    ((32,), (12,), (32,)),
    ((33,), (33,), (33,)),  # odd, every mode kept
    ((16,), (16,), (16,)),  # even, last-axis Nyquist kept
    ((15,), (10,), (40,)),  # odd -> finer
    ((40,), (12,), (9,)),  # coarser than the kept modes: truncation
    ((16, 16), (16, 16), (16, 16)),  # Nyquist edge on both axes
    ((33, 31), (12, 10), (33, 31)),  # odd sizes (where neuraloperator 2.0 is wrong)
    ((63, 63), (16, 16), (63, 63)),
    ((12, 10), (12, 10), (24, 10)),  # upsample along the first axis only
    ((12, 10), (12, 10), (12, 25)),  # upsample along the last axis only
    ((12, 10), (8, 8), (31, 17)),  # both, odd output
    ((20, 18), (12, 12), (11, 7)),  # downsample both, below the kept modes
    ((8, 9, 10), (8, 6, 10), (8, 9, 10)),
    ((8, 9, 10), (6, 6, 6), (13, 9, 10)),
    ((8, 9, 10), (6, 6, 6), (8, 16, 10)),
    ((8, 9, 10), (6, 6, 6), (5, 4, 21)),
    # the gemm backend computes axis 0 for k_0 >= 0 and takes k_0 < 0 as conjugates, so the
    # middle axis runs over -(M//2)..M//2: at its Nyquist edge (+-5 alias on 10 points), with
    # odd modes, and dropping +4 but keeping -4 on a coarser output grid
    ((8, 10, 9), (7, 10, 6), (8, 8, 9)),
    ((9, 10, 8), (8, 9, 8), (16, 10, 5)),
]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


@pytest.mark.parametrize("backend", ["fft", "gemm", "auto"])
@pytest.mark.parametrize(("grid", "n_modes", "out"), CASES)
def test_forward_and_backward_match_direct_dft(backend, grid, n_modes, out):
    torch.manual_seed(sum(grid) + len(out))
    conv = SpectralConv(3, 2, n_modes, backend=backend)
    x = torch.randn(2, 3, *grid, requires_grad=True)
    y = conv(x, output_shape=out)
    assert y.shape == (2, 2, *out)

    x64 = x.detach().double().requires_grad_()
    w64 = conv.weight.detach().double().requires_grad_()
    b64 = conv.bias.detach().double().requires_grad_()
    ref = direct_spectral_conv(x64, w64, b64, n_modes, out)
    assert _rel(y, ref) < TOL

    probe = torch.randn_like(ref)
    (y * probe.float()).sum().backward()
    (ref * probe).sum().backward()
    assert _rel(x.grad, x64.grad) < TOL
    assert _rel(conv.weight.grad, w64.grad) < TOL
    assert _rel(conv.bias.grad, b64.grad) < TOL


@pytest.mark.parametrize(("grid", "n_modes", "out"), CASES[::3])
def test_backends_agree_in_float64(grid, n_modes, out):
    torch.manual_seed(1)
    x = torch.randn(2, 3, *grid, dtype=torch.float64)
    conv = SpectralConv(3, 4, n_modes, backend="fft").double()
    ref = conv(x, output_shape=out)
    conv.backend = "gemm"
    assert _rel(conv(x, output_shape=out), ref) < 1e-12


def test_the_per_axis_reference_gives_the_fourier_coefficients_of_a_cosine():
    """The maths the backends are held to, against a field whose coefficients are known:
    cos(2π(3y + 2x)) on a 12 x 10 grid has 1/2 at k = (3, 2) and (-3, -2); the half axis
    stores k_1 >= 0 only, so (3, 2) is the one stored coefficient."""

    def grid(n: int) -> torch.Tensor:
        return torch.arange(n, dtype=torch.float64) / n

    y, x = torch.meshgrid(grid(12), grid(10), indexing="ij")
    field = torch.cos(2 * math.pi * (3 * y + 2 * x))[None, None]
    coefficients = reference_analysis(field, (8, 6))[0, 0]  # k_0 in -4..3, k_1 in 0..3
    expected = torch.zeros(8, 4, dtype=torch.complex128)
    expected[3 + 4, 2] = 0.5
    torch.testing.assert_close(coefficients, expected, rtol=0, atol=1e-14)
    # synthesis puts it back on any grid that resolves it, and drops it on one that does not
    y2, x2 = torch.meshgrid(grid(16), grid(12), indexing="ij")
    finer = torch.cos(2 * math.pi * (3 * y2 + 2 * x2))[None, None]
    back = reference_synthesis(coefficients[None, None], (8, 6), (16, 12))
    torch.testing.assert_close(back, finer, rtol=0, atol=1e-13)
    assert reference_synthesis(coefficients[None, None], (8, 6), (6, 12)).abs().max() < 1e-14


@pytest.mark.parametrize("backend", ["fft", "gemm"])
@pytest.mark.parametrize(("grid", "n_modes", "out"), CASES)
def test_backends_are_fast_paths_of_the_per_axis_reference(backend, grid, n_modes, out):
    """Analysis and synthesis of every backend equal the product of the per-axis maps of
    opflow.spectral.axis (float64, canonical layout)."""
    torch.manual_seed(2)
    x = torch.randn(2, 3, *grid, dtype=torch.float64)
    implementation = get_backend(backend)
    coefficients = reference_analysis(x, n_modes)
    spectrum = implementation.analyze(x, n_modes)
    torch.testing.assert_close(spectrum, to_canonical(coefficients), rtol=0, atol=1e-13)
    field = implementation.synthesize(spectrum, n_modes, 3, out)
    expected = reference_synthesis(coefficients, n_modes, out)
    torch.testing.assert_close(field, expected, rtol=0, atol=1e-12)


def _band_limited(n: int, coeffs: torch.Tensor, kmax: int) -> torch.Tensor:
    """Evaluate a real trigonometric polynomial with |k| <= kmax on an n x n periodic grid."""
    grid = torch.arange(n, dtype=torch.float64) / n
    ks = torch.arange(-kmax, kmax + 1, dtype=torch.float64)
    ex = torch.exp(2j * math.pi * ks[:, None] * grid[None, :])  # (K, n)
    field = torch.einsum("cpq,px,qy->cxy", coeffs, ex, ex)
    return field.real[None].float()


def test_resolution_invariance_on_shared_points():
    torch.manual_seed(0)
    kmax = 6
    coeffs = torch.randn(3, 2 * kmax + 1, 2 * kmax + 1, dtype=torch.complex128)
    conv = SpectralConv(3, 2, (16, 16))  # one set of weights for every grid
    outputs = {n: conv(_band_limited(n, coeffs, kmax)).detach() for n in (32, 64, 128)}
    for n in (64, 128):
        step = n // 32
        shared = outputs[n][..., ::step, ::step]
        assert _rel(shared, outputs[32]) < TOL
    # and super-resolution output from the coarse grid equals the fine-grid evaluation
    up = conv(_band_limited(32, coeffs, kmax), output_shape=(128, 128)).detach()
    assert _rel(up, outputs[128]) < TOL


def test_fourier_resample_is_exact_for_band_limited_fields():
    torch.manual_seed(2)
    coeffs = torch.randn(3, 9, 9, dtype=torch.complex128)
    coarse, fine = _band_limited(24, coeffs, 4), _band_limited(60, coeffs, 4)
    assert _rel(fourier_resample(coarse, (60, 60)), fine) < TOL
    assert _rel(fourier_resample(fine, (24, 24)), coarse) < TOL


def test_too_few_grid_points_names_the_axis():
    conv = SpectralConv(1, 1, (16, 24))
    with pytest.raises(ResolutionError, match=r"axis 1.*n_modes\[1\]=24 needs at least 24"):
        conv(torch.randn(1, 1, 32, 20))
    with pytest.raises(ResolutionError, match=r"axis 0"):
        conv(torch.randn(1, 1, 12, 64))


def test_wrong_channels_and_dims_are_clear_errors():
    conv = SpectralConv(3, 1, (8, 8))
    with pytest.raises(ShapeError, match="2 channels on axis 1.*Expected: 3 input channels"):
        conv(torch.randn(1, 2, 16, 16))
    with pytest.raises(ShapeError, match="2 spatial axes.*5 dims"):
        conv(torch.randn(1, 3, 16, 16, 16))
    with pytest.raises(ShapeError, match="output_shape"):
        conv(torch.randn(1, 3, 16, 16), output_shape=(16,))
    with pytest.raises(OpflowError, match="Unknown spectral backend"):
        SpectralConv(3, 1, (8, 8), backend="cufft")


def test_cached_constants_are_bounded_per_device_and_guarded_against_writes():
    from opflow.spectral import fourier

    cpu = torch.device("cpu")
    fourier.analysis_step.cache_clear()
    matrix = fourier.analysis_step(16, 8, 0, 2, torch.float64, cpu)
    assert fourier.analysis_step(16, 8, 0, 2, torch.float64, cpu) is matrix  # built once
    assert fourier.analysis_step(16, 8, 0, 2, torch.float32, cpu) is not matrix  # per dtype
    for n in range(20, 20 + fourier.analysis_step.cache.maxsize + 5):
        fourier.analysis_step(n, 8, 0, 2, torch.float64, cpu)
    assert len(fourier.analysis_step.cache) == fourier.analysis_step.cache.maxsize
    again = fourier.analysis_step(16, 8, 0, 2, torch.float64, cpu)  # evicted, rebuilt equal
    torch.testing.assert_close(again, matrix, rtol=0, atol=0)
    again.mul_(2)  # a caller writes into the shared matrix by mistake
    with pytest.raises(RuntimeError, match="modified in place"):
        fourier.analysis_step(16, 8, 0, 2, torch.float64, cpu)
    fourier.analysis_step.cache_clear()


def _stencil_multipliers(spatial) -> torch.Tensor:
    """``rfftn`` of six random real stencils on a grid, ``(M, 6)`` complex: two stencils, their
    point reflections (real parts equal, imaginary parts opposite: each part has rank 4) and
    two more."""
    dims = tuple(range(1, len(spatial) + 1))
    stencils = torch.randn(4, *spatial, dtype=torch.float64)
    mirrored = torch.roll(stencils[:2].flip(dims), [1] * len(spatial), dims)  # s(-x), periodic
    stencils = torch.cat((stencils[:2], mirrored, stencils[2:]))
    return torch.fft.rfftn(stencils, dim=dims).flatten(1).T


def test_fourier_multiplier_equals_the_composition_in_values_and_gradients(monkeypatch):
    """fourier_multiply (T = basis @ θ built chunk by chunk of wavenumbers from the basis' real
    and imaginary parts factored through their spans, a hand-written backward) against
    autograd through the whole T, rfftn -> per-wavenumber complex product -> irfftn, in
    float64 to 1e-12 (the factors rebuild the basis to 1e-12, one direction per rank):
    values and the gradients of the field and θ, on even and odd grids in 1-3 D (the half
    axis' weights differ at Nyquist), with chunks that do and do not divide the wavenumbers;
    then with the extra maps riding along (a channel map, weights
    on a spectral conv's kept wavenumbers, a bias) and their gradients."""
    from opflow.spectral import multiplier

    monkeypatch.setattr(multiplier, "MODES_PER_CHUNK", 7)
    torch.manual_seed(0)
    for shape in [(3, 4, 16, 16), (3, 4, 15, 10), (2, 3, 9), (2, 3, 8), (2, 2, 6, 5, 4)]:
        x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
        multipliers = _stencil_multipliers(shape[2:])
        basis = multiplier.SplitBasis.of(multipliers)
        torch.testing.assert_close(basis.multipliers(), multipliers, rtol=0, atol=1e-12)
        ranks = [
            int(torch.linalg.matrix_rank(part)) for part in (multipliers.real, multipliers.imag)
        ]
        assert [basis.real.shape[1], basis.imag.shape[1]] == ranks
        if len(shape) > 3:  # two mirror pairs share their parts: 4 of 6 directions each
            assert ranks == [4, 4]
        theta = torch.randn(6, shape[1], 5, dtype=torch.float64, requires_grad=True)
        upstream = torch.randn(shape[0], 5, *shape[2:], dtype=torch.float64)
        got = multiplier.fourier_multiply(x, basis, theta)
        want = multiplier.fourier_multiply_reference(x, basis, theta)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        grads = torch.autograd.grad(got, (x, theta), upstream)
        expected = torch.autograd.grad(want, (x, theta), upstream)
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
        # with a channel map, a spectral conv's kept wavenumbers and a bias riding along
        rows = multiplier.kept_rows(tuple(min(4, n) for n in shape[2:]), shape[2:])
        extra = multiplier.Extra(
            channel=torch.randn(shape[1], 5, dtype=torch.float64, requires_grad=True),
            modes=torch.randn(len(rows), shape[1], 5, 2, dtype=torch.float64, requires_grad=True),
            rows=rows,
            bias=torch.randn(5, dtype=torch.float64, requires_grad=True),
        )
        inputs = (x, theta, extra.channel, extra.modes, extra.bias)
        got = multiplier.fourier_multiply(x, basis, theta, extra)
        want = multiplier.fourier_multiply_reference(x, basis, theta, extra)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
        grads = torch.autograd.grad(got, inputs, upstream)
        expected = torch.autograd.grad(want, inputs, upstream)
        for g, e in zip(grads, expected):
            torch.testing.assert_close(g, e, rtol=1e-12, atol=1e-12)
