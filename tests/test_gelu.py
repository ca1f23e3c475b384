"""The GELU kernel (opflow/native/gelu.c) against float64 torch, and its torch fallback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import needs, outputs_and_gradients

from opflow import native
from opflow.layers.gelu import (
    MAX_AFFINE_INPUTS,
    affine_gelu,
    affine_gelu_backward,
    affine_uses_kernel,
    gelu,
    gelu_backward,
    uses_kernel,
)

needs_kernel = needs(
    "native", native.status("gelu") == "loaded", f"GELU kernel: {native.status('gelu')}"
)


# a fresh process: what the kernel's status is, and whether gelu() then equals torch's
_FALLBACK_CHECK = (
    "import torch, torch.nn.functional as F\n"
    "from opflow import native\n"
    "from opflow.layers.gelu import gelu\n"
    "x = torch.randn(1000)\n"
    "print(native.status('gelu'))\n"
    "print(torch.equal(gelu(x), F.gelu(x)))\n"
)


def _run_with_env(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )


def _reference(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x.double())


def _reference_grad(grad: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return torch.ops.aten.gelu_backward(grad.double(), x.double())


def _inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    dense = torch.linspace(-12.0, 12.0, 400_001)
    return torch.cat([dense, 4 * torch.randn(100_003, generator=g)])


@needs_kernel
def test_gelu_kernel_matches_float64_to_2e7_relative():
    """|error| <= 2.5e-7 max(1, |x|): torch's own float32 GELU is within 2.6e-7 of float64."""
    x = _inputs()
    assert uses_kernel(x)
    err = (gelu(x).double() - _reference(x)).abs() / x.abs().clamp(min=1).double()
    assert err.max().item() < 2.5e-7


@needs_kernel
def test_gelu_backward_kernel_matches_float64_to_3e7():
    x = _inputs()
    grad = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    err = (gelu_backward(grad, x).double() - _reference_grad(grad, x)).abs()
    assert (err / grad.abs().double().clamp(min=1)).max().item() < 3e-7


@needs_kernel
def test_gelu_kernel_edges_and_special_values():
    """Huge negative x gives 0 (not x times a rounding error), inf and nan as torch gives them."""
    x = torch.tensor([0.0, 1e-30, -1e-30, 1e30, -1e30, -6.0, -50.0, float("inf")])
    expected = torch.tensor([0.0, 5e-31, -5e-31, 1e30, 0.0, 0.0, 0.0, float("inf")])
    torch.testing.assert_close(gelu(x), expected, atol=1e-7, rtol=1e-6)
    ones = torch.ones_like(x)
    expected_grad = torch.tensor([0.5, 0.5, 0.5, 1.0, 0.0, 0.0, 0.0, float("nan")])
    torch.testing.assert_close(
        gelu_backward(ones, x), expected_grad, atol=1e-7, rtol=1e-6, equal_nan=True
    )
    for special in (float("nan"), -float("inf")):  # torch: nan for both
        t = torch.full((9,), special)
        assert torch.isnan(gelu(t)).all() and torch.isnan(gelu_backward(torch.ones(9), t)).all()


@needs_kernel
@pytest.mark.parametrize("n", [1, 7, 8, 9, 16383, 16385, 40_001])
def test_gelu_kernel_every_length_and_thread_count(n):
    """Partial vectors and partial thread blocks are computed, and threads do not change bits."""
    x = 3 * torch.randn(n, generator=torch.Generator().manual_seed(n))
    grad = torch.randn(n, generator=torch.Generator().manual_seed(n + 1))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one_thread = gelu(x), gelu_backward(grad, x)
    finally:
        torch.set_num_threads(threads)
    torch.set_num_threads(2)
    try:
        two_threads = gelu(x), gelu_backward(grad, x)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one_thread, two_threads):
        assert torch.equal(a, b)
    assert (one_thread[0].double() - _reference(x)).abs().max().item() < 3e-6
    assert (one_thread[1].double() - _reference_grad(grad, x)).abs().max().item() < 3e-6


@needs_kernel
def test_gelu_kernel_in_place_equals_out_of_place():
    x = 3 * torch.randn(3, 5, 1001, generator=torch.Generator().manual_seed(2))
    grad = torch.randn(3, 5, 1001, generator=torch.Generator().manual_seed(3))
    expected, expected_grad = gelu(x), gelu_backward(grad, x)
    y = x.clone()
    assert torch.equal(gelu(y, out=y), expected)
    g = grad.clone()
    assert torch.equal(gelu_backward(g, x, out=g), expected_grad)
    y = x.clone()
    assert torch.equal(gelu_backward(grad, y, out=y), expected_grad)


def _affine_case(k_in: int, seed: int = 5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, k_in, 1003, generator=g)
    w = torch.randn(17, k_in, generator=g) / k_in**0.5
    b = torch.randn(17, generator=g)
    grad = torch.randn(3, 17, 1003, generator=g)
    return x, w, b, grad


@needs_kernel
@pytest.mark.parametrize("k_in", [1, 3, MAX_AFFINE_INPUTS])
def test_affine_gelu_kernel_matches_float64_autograd(k_in):
    """GELU(W x + b) without a stored pre-activation: values and all gradients (the weight's
    and bias's summed over 3009 points) against float64 autograd through einsum + F.gelu."""
    x, w, b, grad = _affine_case(k_in)
    assert affine_uses_kernel(x, w, b, grad)
    xd, wd, bd = (t.double().requires_grad_() for t in (x, w, b))
    pre = torch.einsum("ck,bkn->bcn", wd, xd) + bd[None, :, None]
    ref = F.gelu(pre)
    ref.backward(grad.double())
    out = affine_gelu(x, w, b)
    assert (out.double() - ref).abs().max().item() < 2e-6
    grad_pre, grad_w, grad_b = affine_gelu_backward(grad.clone(), x, w, b)
    ref_grad_pre = torch.ops.aten.gelu_backward(grad.double(), pre.detach())
    assert (grad_pre.double() - ref_grad_pre).abs().max().item() < 2e-6
    for got, want in ((grad_w, wd.grad), (grad_b, bd.grad)):
        assert ((got.double() - want).norm() / want.norm()).item() < 1e-6


def test_affine_gelu_with_many_inputs_is_gemm_and_gelu():
    x, w, b, grad = _affine_case(MAX_AFFINE_INPUTS + 1)
    assert not affine_uses_kernel(x, w, b)
    expected = F.gelu(torch.baddbmm(b[None, :, None], w.expand(3, -1, -1), x))
    torch.testing.assert_close(affine_gelu(x, w, b), expected, rtol=2e-6, atol=2e-6)
    pre = torch.baddbmm(b[None, :, None], w.expand(3, -1, -1), x)
    grad_pre, grad_w, grad_b = affine_gelu_backward(grad.clone(), x, w, b)
    torch.testing.assert_close(grad_pre, torch.ops.aten.gelu_backward(grad, pre))
    want_w = torch.einsum("bcn,bkn->ck", grad_pre.double(), x.double())
    assert ((grad_w.double() - want_w).norm() / want_w.norm()).item() < 1e-6
    torch.testing.assert_close(grad_b, grad_pre.sum(dim=(0, 2)))


def test_other_dtypes_and_layouts_are_torch_exactly():
    """float64 and non-contiguous tensors take torch's op: the same bits as F.gelu."""
    g = torch.Generator().manual_seed(4)
    x64 = torch.randn(4, 100, dtype=torch.float64, generator=g)
    grad64 = torch.randn(4, 100, dtype=torch.float64, generator=g)
    assert torch.equal(gelu(x64), F.gelu(x64))
    assert torch.equal(gelu_backward(grad64, x64), torch.ops.aten.gelu_backward(grad64, x64))
    strided = torch.randn(100, 4, generator=g).T
    assert not uses_kernel(strided)
    assert torch.equal(gelu(strided), F.gelu(strided))
    assert not uses_kernel(torch.randn(4), torch.randn(3, 4))  # shapes differ: torch's op


def test_a_tensor_under_autograd_keeps_its_gradient():
    x = torch.randn(50, requires_grad=True)
    gelu(x).sum().backward()
    torch.testing.assert_close(x.grad, torch.ops.aten.gelu_backward(torch.ones(50), x.detach()))


def test_disabled_kernel_says_why_and_falls_back():
    result = _run_with_env(_FALLBACK_CHECK, OPFLOW_NATIVE="0")
    assert result.stdout.splitlines() == ["disabled by OPFLOW_NATIVE=0", "True"]


def test_erf_coefficients_in_the_kernel_come_from_the_fit():
    from opflow.native.fit_erf import fit

    source = (Path(native.__file__).parent / "gelu.c").read_text()
    p, q, max_err = fit()
    assert max_err < 5e-8
    for name, fitted in (("ERF_P", p), ("ERF_Q", q)):
        body = re.search(rf"{name}\[\d+\] = \{{([^}}]*)\}}", source).group(1)
        in_source = [float(v.strip().rstrip("f")) for v in body.split(",")]
        np.testing.assert_allclose(in_source, fitted, rtol=1e-6)


@needs_kernel
def test_kernel_builds_into_an_empty_cache_once(tmp_path):
    code = "from opflow import native; print(native.status('gelu'))"
    first = _run_with_env(code, OPFLOW_CACHE_DIR=str(tmp_path))
    built = sorted(p.name for p in tmp_path.iterdir())
    assert first.stdout.strip() == "loaded"
    assert len(built) == 1 and re.fullmatch(r"gelu-[0-9a-f]{16}\.so", built[0])
    mtime = (tmp_path / built[0]).stat().st_mtime_ns
    second = _run_with_env(code, OPFLOW_CACHE_DIR=str(tmp_path), CC="false")  # no build needed
    assert second.stdout.strip() == "loaded"
    assert (tmp_path / built[0]).stat().st_mtime_ns == mtime
    assert sorted(p.name for p in tmp_path.iterdir()) == built  # no temporary left behind


@needs_kernel  # a machine that builds it, made to fail
def test_a_failed_build_warns_and_falls_back(tmp_path):
    result = _run_with_env(_FALLBACK_CHECK, OPFLOW_CACHE_DIR=str(tmp_path), CC="false")
    status, same = result.stdout.splitlines()
    assert status.startswith("the build failed (exit 1)") and same == "True"
    assert "RuntimeWarning: opflow: C kernel 'gelu' unavailable, using torch" in result.stderr
    assert list(tmp_path.iterdir()) == []  # the failed build's temporary file is removed


@needs_kernel
def test_a_narrow_fno_through_the_kernels_matches_its_composed_modules():
    """hidden_channels 8: the lifting and each block's channel MLP take affine_gelu (no stored
    pre-activation), GELUs the kernel; float32 against the same blocks composed of modules."""
    from opflow.models import FNO

    torch.manual_seed(0)
    model = FNO((8, 8), 1, 1, 8)
    x = torch.randn(4, 1, 32, 32)
    assert affine_uses_kernel(torch.randn(4, 8, 1024), torch.randn(4, 8), torch.randn(4))

    def fuse(setting: bool) -> None:
        for block in model.blocks:
            block.fuse = setting

    (fused, fused_grads), (composed, composed_grads) = outputs_and_gradients(
        model, x, dict(model.named_parameters()), (True, False), fuse
    )
    assert ((fused - composed).norm() / composed.norm()).item() < 2e-6
    for name, b in composed_grads.items():
        assert ((fused_grads[name] - b).norm() / b.norm()).item() < 2e-6, name


@pytest.mark.parametrize("ci", ["true", ""])
def test_ci_fails_where_the_kernel_tests_would_be_skipped(tmp_path, ci):
    """Without a C compiler the kernel's tests skip on a developer's machine, but fail in CI
    (``CI=true``): CI cannot lose them unnoticed."""
    env = dict(os.environ, CI=ci, CC="false", OPFLOW_CACHE_DIR=str(tmp_path))
    env.pop("OPFLOW_REQUIRE", None)
    test = f"{Path(__file__)}::test_gelu_kernel_edges_and_special_values"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        cwd=Path(__file__).parent.parent,
    )
    if ci:
        assert done.returncode == 1, done.stdout[-2000:]
        assert "native is required here" in done.stdout
    else:
        assert done.returncode == 0, done.stdout[-2000:]
        assert "1 skipped" in done.stdout
