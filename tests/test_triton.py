"""The ``triton`` backend's kernels, run by Triton's CPU interpreter, against the fft reference.

``TRITON_INTERPRET=1`` must be set before ``triton`` is first imported; ``conftest.py`` does
it. The cases are small: the interpreter runs every program instance in Python.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from conftest import needs

import opflow.spectral.backends as backends_module
from opflow.errors import BackendError
from opflow.spectral import SpectralConv, get_backend, select_backend

pytestmark = needs(
    "triton",
    importlib.util.find_spec("triton") is not None and os.environ.get("TRITON_INTERPRET") == "1",
    "the Triton tests need the triton package and its CPU interpreter (TRITON_INTERPRET=1)",
)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _pair(c_in, c_out, n_modes):
    """A float64 fft-backend layer and a float32 triton-backend layer with the same weights."""
    reference = SpectralConv(c_in, c_out, n_modes, bias=True, backend="fft").double()
    candidate = SpectralConv(c_in, c_out, n_modes, bias=True, backend="triton")
    candidate.load_state_dict({k: v.float() for k, v in reference.state_dict().items()})
    return reference, candidate


CASES = [
    # (batch, c_in, c_out, grid, n_modes, output_shape)
    (2, 3, 4, (11,), (6,), None),  # 1-D, odd grid
    (1, 3, 2, (12,), (12,), (20,)),  # 1-D, modes up to Nyquist, upsampled
    (2, 3, 4, (10, 9), (6, 6), None),  # 2-D, even x odd
    (3, 2, 3, (9, 8), (9, 8), (13, 16)),  # 2-D, every mode kept (Nyquist edge), upsampled
    (2, 2, 2, (16, 14), (8, 8), (8, 7)),  # 2-D, downsampled
    (1, 2, 3, (6, 5, 6), (4, 4, 4), None),  # 3-D
]


@pytest.mark.parametrize("batch,c_in,c_out,grid,n_modes,out", CASES)
def test_forward_and_backward_match_the_fft_reference(batch, c_in, c_out, grid, n_modes, out):
    torch.manual_seed(0)
    reference, candidate = _pair(c_in, c_out, n_modes)
    x64 = torch.randn(batch, c_in, *grid, dtype=torch.float64, requires_grad=True)
    x32 = x64.detach().float().requires_grad_(True)
    expected = reference(x64, output_shape=out)
    got = candidate(x32, output_shape=out)
    assert got.shape == expected.shape and got.dtype == torch.float32
    assert _rel(got, expected) < 1e-4
    upstream = torch.randn_like(expected)
    expected.backward(upstream)
    got.backward(upstream.float())
    assert _rel(x32.grad, x64.grad) < 1e-4
    assert _rel(candidate.weight.grad, reference.weight.grad) < 1e-4
    assert _rel(candidate.bias.grad, reference.bias.grad) < 1e-4


def test_non_contiguous_input():
    torch.manual_seed(1)
    reference, candidate = _pair(3, 2, (6, 5))
    base = torch.randn(2, 9, 3, 10, dtype=torch.float64)
    x64 = base.permute(0, 2, 3, 1)  # (2, 3, 10, 9), not contiguous
    assert not x64.is_contiguous()
    x64.requires_grad_(True)
    x32 = x64.detach().float().requires_grad_(True)
    expected = reference(x64)
    got = candidate(x32)
    assert _rel(got, expected) < 1e-4
    upstream = torch.randn_like(expected)
    expected.backward(upstream)
    got.backward(upstream.float())
    assert x32.grad.shape == x32.shape and _rel(x32.grad, x64.grad) < 1e-4


def test_bfloat16_input_accumulates_in_float32():
    torch.manual_seed(2)
    reference, candidate = _pair(4, 4, (8, 8))
    x = torch.randn(2, 4, 16, 16).bfloat16()
    got = candidate(x)
    assert got.dtype == torch.bfloat16
    # against float64 on the same (rounded) input: only the output's bf16 rounding remains
    # (measured 2.1e-3; the output rounding alone is 1.7e-3; bf16 unit roundoff is 2^-9)
    assert _rel(got.float(), reference(x.double())) < 4e-3
    x.requires_grad_(True)
    x64 = x.detach().double().requires_grad_(True)
    upstream = torch.randn(got.shape)
    candidate(x).float().backward(upstream)
    reference(x64).backward(upstream.double())
    # the gradient, rounded once to bfloat16 at the end: within the same few 2^-9
    assert x.grad.dtype == torch.bfloat16 and _rel(x.grad.float(), x64.grad) < 4e-3


def test_canonical_analyze_and_synthesize_match_the_fft_backend():
    torch.manual_seed(3)
    triton_backend, fft = get_backend("triton"), get_backend("fft")
    x = torch.randn(2, 3, 9, 10)
    spec = triton_backend.analyze(x, (6, 8))
    reference = fft.analyze(x.double(), (6, 8))
    assert spec.shape == reference.shape
    assert _rel(spec, reference) < 1e-5
    field = triton_backend.synthesize(spec, (6, 8), 3, (12, 15))
    assert _rel(field, fft.synthesize(reference, (6, 8), 3, (12, 15))) < 1e-5


def test_dispatch_rules(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert select_backend("auto", (64, 64), (16, 16), cpu).__name__.endswith("gemm")
    # on a GPU: the Triton kernels where they apply, cuFFT (the fft backend) elsewhere
    assert select_backend("auto", (64, 64), (16, 16), cuda).__name__.endswith("triton")
    assert select_backend("auto", (8, 46341), (4, 4), cuda).__name__.endswith(".fft")
    monkeypatch.setattr(backends_module, "triton_available", lambda: False)
    assert select_backend("auto", (64, 64), (16, 16), cuda).__name__.endswith(".fft")
    monkeypatch.undo()
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendError, match="use backend='auto' or 'gemm' on the CPU"):
        select_backend("triton", (64, 64), (16, 16), cpu)
    layer = SpectralConv(2, 2, (4, 4), backend="triton")
    with pytest.raises(BackendError, match="CUDA tensor"):
        layer(torch.randn(1, 2, 8, 8))


def _memory_traffic(*args):
    """The traffic model of ``benchmarks/traffic.py`` (a benchmark's model, not the library's)."""
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "traffic.py"
    spec = importlib.util.spec_from_file_location("opflow_benchmarks_traffic", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.memory_traffic(*args)


def test_memory_traffic_model_fused_moves_under_half_of_unfused():
    report = _memory_traffic(16, 64, 64, (256, 256), (32, 32))
    assert report.ratio < 0.5
    # exact counts for a tiny case (bytes): 1 x 1 channel, 8 x 8 grid, 4 x 4 modes
    tiny = _memory_traffic(1, 1, 1, (8, 8), (4, 4))
    assert tiny.fused == {
        "analysis, last axis: read field": 64 * 4,
        "analysis, last axis: write kept columns": 8 * 3 * 8,
        "fused last analysis + mixing: read input": 8 * 3 * 8,
        "fused last analysis + mixing: read weights": 12 * 8,
        "fused last analysis + mixing: write mixed modes": 12 * 8,
        "synthesis, axis 0: read + write": (12 + 24) * 8,
        "synthesis, last axis: read": 24 * 8,
        "synthesis, last axis: write field": 64 * 4,
    }
    assert tiny.unfused["rfftn: write half spectrum"] == 8 * 5 * 8


@pytest.mark.parametrize(
    ("grid", "n_modes", "out"),
    [((16,), (8,), (24,)), ((12, 10), (8, 6), (20, 7)), ((8, 9, 10), (6, 6, 6), (5, 12, 10))],
)
def test_triton_transforms_are_fast_paths_of_the_per_axis_reference(grid, n_modes, out):
    """Analysis and synthesis of the kernels against opflow.spectral.axis (float32 kernels)."""
    from opflow.spectral.axis import reference_analysis, reference_synthesis, to_canonical

    torch.manual_seed(3)
    x = torch.randn(2, 3, *grid)
    triton_backend = get_backend("triton")
    coefficients = reference_analysis(x.double(), n_modes)
    spectrum = triton_backend.analyze(x, n_modes)
    torch.testing.assert_close(spectrum.double(), to_canonical(coefficients), rtol=0, atol=2e-6)
    field = triton_backend.synthesize(spectrum, n_modes, 3, out)
    expected = reference_synthesis(coefficients, n_modes, out)
    torch.testing.assert_close(field.double(), expected, rtol=0, atol=2e-5)
