"""The Navier–Stokes solver against the exact Taylor–Green decay, its convergence, and recipes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import xarray as xr

from opflow.data.recipes import generate, load_recipe
from opflow.errors import ConfigError
from opflow.solvers import navier_stokes as ns


def _rel(a, b) -> float:
    return ((a - b).norm() / b.norm()).item()


def test_taylor_green_matches_exact_decay():
    nu = 1e-3  # the viscosity of the benchmark data
    for mode in (1, 2):
        w0 = ns.taylor_green_vorticity(32, 0.0, nu, mode=mode)
        out = ns.solve(w0, nu, record_interval=0.5, n_records=4, dt=1 / 100)
        for i in range(4):
            exact = ns.taylor_green_vorticity(32, 0.5 * (i + 1), nu, mode=mode)
            assert _rel(out[:, i], exact) < 1e-6


def test_taylor_green_converges_second_order_in_time():
    nu = 5e-2
    w0 = ns.taylor_green_vorticity(16, 0.0, nu)
    exact = ns.taylor_green_vorticity(16, 1.0, nu)
    errors = [_rel(ns.solve(w0, nu, 1.0, 1, dt=dt)[:, 0], exact) for dt in (0.1, 0.05, 0.025)]
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(1.9 < p < 2.1 for p in orders), (errors, orders)


def test_nonlinear_flow_converges_in_time_and_space():
    gen = torch.Generator().manual_seed(0)
    fine = 128
    w0_fine = ns.gaussian_random_field(2, fine, generator=gen)
    forcing = ns.default_forcing(fine)
    # time: Heun advection + Crank–Nicolson: second order; errors against a 4x finer step
    ref = ns.solve(w0_fine[:, ::2, ::2], 1e-3, 1.0, 1, ns.default_forcing(64), dt=1 / 512)
    errs = [
        _rel(ns.solve(w0_fine[:, ::2, ::2], 1e-3, 1.0, 1, ns.default_forcing(64), dt=dt), ref)
        for dt in (1 / 32, 1 / 64, 1 / 128)
    ]
    assert errs[0] > errs[1] > errs[2]
    assert math.log2(errs[0] / errs[1]) > 1.8 and math.log2(errs[1] / errs[2]) > 1.8  # 2.02, 2.07
    # space: the same band-limited initial condition on finer grids converges spectrally
    kept = torch.fft.rfft2(w0_fine)
    kept[..., 8:-8, :] = 0
    kept[..., 9:] = 0
    smooth = torch.fft.irfft2(kept, s=(fine, fine))
    results = {}
    for n in (32, 64, 128):
        step = fine // n
        results[n] = ns.solve(
            smooth[:, ::step, ::step], 1e-2, 0.5, 1, forcing[::step, ::step], dt=1 / 400
        )
    err_32 = _rel(results[32][..., :, :], results[128][..., ::4, ::4])
    err_64 = _rel(results[64], results[128][..., ::2, ::2])
    assert err_64 < err_32 / 10 and err_64 < 1e-4, (err_32, err_64)


def _reference_solution(w0: np.ndarray, nu: float, forcing: np.ndarray, t_end: float, dt: float):
    """An independent integrator of the same equation: classical RK4 with every term explicit,
    the advection in Jacobian form ``psi_y w_x - psi_x w_y`` on numpy's complex FFT (the
    solver: Heun + Crank–Nicolson, ``u . grad w`` on torch's real FFT), the same 2/3 rule."""
    n = w0.shape[-1]
    k_int = np.fft.fftfreq(n, 1.0 / n)
    ky, kx = np.meshgrid(2 * np.pi * k_int, 2 * np.pi * k_int, indexing="ij")
    k2 = kx**2 + ky**2
    inverse_laplacian = np.divide(1.0, k2, out=np.zeros_like(k2), where=k2 > 0)
    cut = 2.0 / 3.0 * (n // 2)
    ky_int, kx_int = np.meshgrid(k_int, k_int, indexing="ij")
    dealias = (np.abs(ky_int) <= cut) & (np.abs(kx_int) <= cut)
    f_hat = np.fft.fft2(forcing)

    def derivative(a_hat, k):
        return np.fft.ifft2(1j * k * a_hat).real

    def tendency(w_hat):
        psi_hat = w_hat * inverse_laplacian  # -Laplacian psi = w
        jacobian = derivative(psi_hat, ky) * derivative(w_hat, kx) - derivative(
            psi_hat, kx
        ) * derivative(w_hat, ky)
        return f_hat - dealias * np.fft.fft2(jacobian) - nu * k2 * w_hat

    w_hat = np.fft.fft2(w0)
    for _ in range(round(t_end / dt)):
        a = tendency(w_hat)
        b = tendency(w_hat + dt / 2 * a)
        c = tendency(w_hat + dt / 2 * b)
        d = tendency(w_hat + dt * c)
        w_hat = w_hat + dt / 6 * (a + 2 * b + 2 * c + d)
    return np.fft.ifft2(w_hat).real


def test_nonlinear_flow_matches_an_independent_integrator():
    # a random flow whose advection moves it by 45% of its norm in one time unit: a wrong
    # velocity (sign, swapped components) or advection term cannot stay within the bound
    w0 = ns.gaussian_random_field(2, 32, generator=torch.Generator().manual_seed(3))
    forcing = ns.default_forcing(32)
    out = ns.solve(w0, 1e-3, 1.0, 1, forcing, dt=1 / 400)[:, 0].numpy()
    reference = np.stack(
        [_reference_solution(w, 1e-3, forcing.numpy(), 1.0, 1 / 1000) for w in w0.numpy()]
    )
    moved = np.linalg.norm(reference - w0.numpy()) / np.linalg.norm(reference)
    assert moved > 0.4
    # 2.1e-7 measured: the solver's second-order time error at dt = 1/400
    assert np.linalg.norm(out - reference) / np.linalg.norm(reference) < 1e-6


@pytest.mark.timeout(30)  # 0.3 s; a wrong advection sign made the CFL rule loop for hours
def test_cfl_time_step_and_bad_settings():
    w0 = ns.gaussian_random_field(1, 32, generator=torch.Generator().manual_seed(1))
    auto = ns.solve(w0, 1e-3, 0.5, 1, ns.default_forcing(32))
    fixed = ns.solve(w0, 1e-3, 0.5, 1, ns.default_forcing(32), dt=1 / 2000)
    assert _rel(auto, fixed) < 2e-2  # the CFL step is accurate to first order
    with pytest.raises(ConfigError, match="does not divide"):
        ns.solve(w0, 1e-3, 0.5, 1, dt=0.3)
    with pytest.raises(ConfigError, match="n even"):
        ns.solve(torch.zeros(1, 33, 33), 1e-3, 0.5, 1)
    # an unstable Courant number: a clear error, not a NaN deep in the time-step rule
    w0 = ns.gaussian_random_field(2, 64, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ConfigError, match="blew up during record 3"):
        ns.solve(w0, 1e-5, 1.0, 5, ns.default_forcing(64), cfl=2.0)
    # the last record too (there is no later step rule to notice): it was returned as NaN
    strong = 50 * ns.gaussian_random_field(2, 32, 2.5, 7.0, torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="blew up during record 1"):
        ns.solve(strong.double(), 1e-4, 1.0, 1, cfl=5.0)


RECIPE = """\
name: tiny_ns
equation: navier_stokes
viscosity: 1.0e-3
resolutions: [16, 32]
n_samples: 3
n_records: 2
record_interval: 0.5
seed: 7
dtype: float32
batch_size: 2
"""


def test_recipe_is_reproducible_and_resolutions_share_initial_conditions(tmp_path):
    recipe_path = tmp_path / "tiny.yaml"
    recipe_path.write_text(RECIPE)
    recipe = load_recipe(recipe_path)
    first = generate(recipe, tmp_path / "a" / "ns.nc", progress=False)
    second = generate(recipe, tmp_path / "b" / "ns.nc", progress=False)
    assert sorted(first) == [16, 32]
    for n in first:
        assert first[n].read_bytes() == second[n].read_bytes()
    coarse, fine = xr.open_dataset(first[16]), xr.open_dataset(first[32])
    assert coarse.vorticity.dims == ("sample", "time", "y", "x")
    assert coarse.vorticity.attrs["units"] == "1" and "long_name" in coarse.x.attrs
    assert "tiny_ns" in coarse.attrs["recipe"] and coarse.attrs["source"] == ns.SOLVER_VERSION
    np.testing.assert_array_equal(coarse.vorticity.values, fine.vorticity.values[..., ::2, ::2])
    np.testing.assert_allclose(coarse.time.values, [0.0, 0.5, 1.0])
    # no temporary files left behind
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["ns_16.nc", "ns_32.nc"]


def test_recipe_errors_name_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(RECIPE.replace("viscosity", "viscocity"))
    with pytest.raises(
        ConfigError, match="did you mean tiny_ns.viscosity|did you mean bad.viscosity"
    ):
        load_recipe(bad)
    bad.write_text(RECIPE.replace("[16, 32]", "[16, 24]"))
    with pytest.raises(ConfigError, match="resolution 16 cannot be sampled"):
        load_recipe(bad)


def test_the_quickstart_data_hold_resolved_detail_above_the_training_band():
    """The quickstart's 128² truth has content above the 64² band (so its 128² evaluation can
    tell super-resolution from interpolation), and that content is resolved: a 256² solve of
    the same initial states agrees with it."""
    from pathlib import Path

    from opflow.evaluate.metrics import band_split

    recipe = load_recipe(Path(__file__).parent.parent / "datasets/navier_stokes_quickstart.yaml")
    assert max(recipe.resolutions) == 128 and min(recipe.resolutions) == 64
    w0 = ns.gaussian_random_field(
        2, 256, recipe.grf_alpha, recipe.grf_tau, torch.Generator().manual_seed(0), torch.float32
    )  # the recipe's dtype

    def solve(n, records):
        step = 256 // n
        forcing = ns.default_forcing(n, torch.float32)
        return ns.solve(
            w0[:, ::step, ::step], recipe.viscosity, 1.0, records, forcing, cfl=recipe.cfl
        )

    at_128 = solve(128, recipe.n_records)
    above = [
        band_split(torch.zeros_like(state), state, (64, 64))[1].mean().item()
        for state in at_128[:, 1:].unbind(1)  # the targets of the quickstart's pairs
    ]
    assert np.mean(above) > 1e-3  # measured 1.5e-3; evaluate's threshold for "consistency only"
    at_256 = solve(256, 2)[..., ::2, ::2]  # measured 1.0e-3 and 4.4e-4
    for record in range(2):
        assert _rel(at_128[:, record], at_256[:, record]) < 3e-3
