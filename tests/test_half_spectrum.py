"""The real inverse DFT of a mode-major spectrum (opflow/spectral/half_spectrum.py and its C
packing kernel, opflow/native/half_spectrum.c) against torch.fft.irfftn."""

from __future__ import annotations

import pytest
import torch
from conftest import needs

from opflow import native
from opflow.errors import ShapeError
from opflow.spectral.half_spectrum import irfftn_mode_major, uses_kernel

needs_kernel = needs(
    "native",
    native.status("half_spectrum") == "loaded",
    f"half-spectrum kernel: {native.status('half_spectrum')}",
)

# (6, 40): blocks of 16 columns written around the caches and a partial block after them, rows
# that start on a cache line and rows that do not; (9, 34) an odd first axis; 1-D and 3-D
GRIDS = [(6, 40), (9, 34), (64, 64), (5, 7, 12), (10,), (12, 9, 4), (4, 2)]


def _spectrum(grid: tuple[int, ...], dtype: torch.dtype, hermitian: bool) -> torch.Tensor:
    """``(B, C, *half)``: a real field's ``rfftn``, or (not ``hermitian``) any complex numbers,
    whose columns 0 and N/2 have anti-Hermitian parts that irfftn must drop."""
    g = torch.Generator().manual_seed(len(grid) * 100 + grid[-1])
    x = torch.randn(3, 5, *grid, dtype=dtype, generator=g)
    spectrum = torch.fft.rfftn(x, dim=tuple(range(2, x.ndim)), norm="forward")
    if not hermitian:
        noise = torch.randn(spectrum.shape, dtype=spectrum.dtype, generator=g)
        spectrum = spectrum + noise
    return spectrum


def _mode_major(spectrum: torch.Tensor) -> torch.Tensor:
    return spectrum.flatten(2).permute(2, 1, 0).contiguous()


@needs_kernel
@pytest.mark.parametrize("grid", GRIDS, ids=str)
@pytest.mark.parametrize("hermitian", [True, False], ids=["hermitian", "any"])
@pytest.mark.parametrize(("dtype", "tol"), [(torch.float64, 1e-13), (torch.float32, 2e-6)])
def test_kernel_path_equals_irfftn(grid, hermitian, dtype, tol):
    spectrum = _spectrum(grid, dtype, hermitian)
    dims = tuple(range(2, 2 + len(grid)))
    expected = torch.fft.irfftn(spectrum, s=grid, dim=dims, norm="forward")
    modes = _mode_major(spectrum)
    assert uses_kernel(modes, grid)
    got = irfftn_mode_major(modes, grid)
    assert got.shape == expected.shape and got.dtype == expected.dtype
    assert got.is_contiguous()
    scale = expected.abs().max()
    assert (got - expected).abs().max() <= tol * scale


@pytest.mark.parametrize("grid", [(6, 9), (5,), (4, 3, 7)], ids=str)
def test_odd_last_axis_is_irfftn_itself(grid):
    spectrum = _spectrum(grid, torch.float64, hermitian=False)
    modes = _mode_major(spectrum)
    assert not uses_kernel(modes, grid)
    dims = tuple(range(2, 2 + len(grid)))
    expected = torch.fft.irfftn(spectrum, s=grid, dim=dims, norm="forward")
    assert torch.equal(irfftn_mode_major(modes, grid), expected)


def test_non_contiguous_spectrum_takes_torch_and_still_agrees():
    spectrum = _spectrum((8, 12), torch.float64, hermitian=True)
    modes = _mode_major(spectrum).transpose(1, 2).contiguous().transpose(1, 2)
    assert not uses_kernel(modes, (8, 12))
    expected = torch.fft.irfftn(spectrum, s=(8, 12), dim=(2, 3), norm="forward")
    assert torch.allclose(irfftn_mode_major(modes, (8, 12)), expected, rtol=0, atol=1e-13)


def test_a_spectrum_of_another_grid_is_refused():
    modes = _mode_major(_spectrum((8, 12), torch.float32, hermitian=True))
    with pytest.raises(ShapeError, match="wavenumbers"):
        irfftn_mode_major(modes, (8, 14))


@needs_kernel
def test_compiled_code_calls_the_kernel_as_an_opaque_op():
    # torch.compile traces with fake tensors: a ctypes call made on one segfaulted
    grid = (8, 12)
    spectrum = _spectrum(grid, torch.float32, hermitian=True)
    modes = _mode_major(spectrum)
    expected = torch.fft.irfftn(spectrum, s=grid, dim=(2, 3), norm="forward")
    compiled = torch.compile(lambda m: 2 * irfftn_mode_major(m, grid), fullgraph=True)
    got = compiled(modes)
    assert (got - 2 * expected).abs().max() <= 1e-5 * expected.abs().max()
