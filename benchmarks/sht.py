"""Spherical harmonic transform and spherical convolution speed: opflow vs torch-harmonics.

Every row is measured in this one process, candidates interleaved repetition by repetition,
reported as medians with the ratio torch-harmonics / opflow (> 1: opflow faster).

    python benchmarks/sht.py [--reps 20] [--threads 2]
    python benchmarks/sht.py --auto-sweep [--reps 9]     # where gemm beats fft in longitude

Rows: forward SHT and inverse SHT of ``batch x channels`` fields (``RealSHT`` /
``InverseRealSHT``, equiangular grid, torch-harmonics' default truncation lmax = (nlat+1)//2,
mmax = lmax) for opflow's ``fft`` and ``gemm`` longitude paths; then the spherical convolution,
forward + backward, against torch-harmonics' ``SpectralConvS2`` (a weight per degree l, complex
in torch-harmonics, real in opflow's ``operator="isotropic"``; the same truncation).
"""

from __future__ import annotations

import argparse
import warnings
from functools import partial

import torch
from spectral_conv import _fwd, _fwd_bwd, interleaved_medians

from opflow.spectral.sphere import SphereGrid, SphericalConv, isht, sht

SIZES = [(64, 128), (128, 256), (256, 512)]


def _th_modules(nlat: int, nlon: int, lmax: int):
    import torch_harmonics as th

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        forward = th.RealSHT(nlat, nlon, lmax, lmax, grid="equiangular")
        inverse = th.InverseRealSHT(nlat, nlon, lmax, lmax, grid="equiangular")
    return forward, inverse


def transform_rows(batch: int, channels: int, reps: int) -> list[tuple[str, float, float]]:
    rows = []
    for nlat, nlon in SIZES:
        grid = SphereGrid(nlat, nlon)
        lmax = grid.max_degree
        forward, inverse = _th_modules(nlat, nlon, lmax)
        x = torch.randn(batch, channels, nlat, nlon)
        coeffs = forward(x)
        with torch.no_grad():
            fns = {
                "th fwd": partial(forward, x),
                "fft fwd": partial(sht, x, grid, lmax, lmax, backend="fft"),
                "gemm fwd": partial(sht, x, grid, lmax, lmax, backend="gemm"),
                "th inv": partial(inverse, coeffs),
                "fft inv": partial(isht, coeffs, grid, backend="fft"),
                "gemm inv": partial(isht, coeffs, grid, backend="gemm"),
            }
            t = interleaved_medians(fns, reps)
        for direction in ("fwd", "inv"):
            ref = t[f"th {direction}"]
            for backend in ("fft", "gemm"):
                ours = t[f"{backend} {direction}"]
                rows.append((f"SHT {direction} {nlat}x{nlon} [{backend}]", ref, ours))
    return rows


def conv_rows(batch: int, channels: int, reps: int) -> list[tuple[str, float, float]]:
    from torch_harmonics import SpectralConvS2

    rows = []
    for nlat, nlon in SIZES[:2]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            theirs = SpectralConvS2((nlat, nlon), (nlat, nlon), channels, channels)
        ours = SphericalConv(channels, channels, theirs.lmax, operator="isotropic")
        x = torch.randn(batch, channels, nlat, nlon, requires_grad=True)
        fns = {"th": _fwd_bwd(theirs, x), "opflow": _fwd_bwd(ours, x)}
        t = interleaved_medians(fns, reps)
        rows.append((f"SphericalConv fwd+bwd {nlat}x{nlon}", t["th"], t["opflow"]))
        fns = {"th": _fwd(theirs, x), "opflow": _fwd(ours, x)}
        t = interleaved_medians(fns, reps)
        rows.append((f"SphericalConv fwd {nlat}x{nlon}", t["th"], t["opflow"]))
    return rows


def auto_sweep(batch: int, channels: int, reps: int) -> None:
    """SphericalConv fwd+bwd with the ``fft`` and ``gemm`` longitude paths, over the kept
    fraction of the longitude orders ``f = mmax / (nlon // 2 + 1)``: the data behind the
    ``auto`` rule shared with the plane (:func:`opflow.spectral.backends.truncated_dft_pays`)."""
    from opflow.spectral.sphere import SphereGrid

    print("| grid | mmax | kept fraction f | fft ms | gemm ms | fft / gemm |")
    print("|---|---|---|---|---|---|")
    for nlat, nlon in [(33, 64), (65, 128), (129, 256)]:
        grid = SphereGrid(nlat, nlon, "equiangular")
        lmax = grid.max_degree  # orders m <= l: at most about half of the longitude orders
        for fraction in (0.1, 0.2, 0.3, 0.4, 0.5):
            mmax = min(lmax, max(2, round(fraction * grid.max_order)))
            x = torch.randn(batch, channels, nlat, nlon, requires_grad=True)
            fns = {}
            for backend in ("fft", "gemm"):
                conv = SphericalConv(channels, channels, lmax, mmax, backend=backend)
                fns[backend] = _fwd_bwd(conv, x)
            t = interleaved_medians(fns, reps)
            f = mmax / grid.max_order
            print(
                f"| {nlat}x{nlon} | {mmax} | {f:.2f} | {1e3 * t['fft']:.2f} | "
                f"{1e3 * t['gemm']:.2f} | {t['fft'] / t['gemm']:.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channels", type=int, default=16)
    parser.add_argument("--auto-sweep", action="store_true", help="fft vs gemm by kept fraction")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.auto_sweep:
        auto_sweep(args.batch, args.channels, args.reps)
        return
    rows = transform_rows(args.batch, args.channels, args.reps)
    rows += conv_rows(args.batch, args.channels, args.reps)
    print(f"\nbatch {args.batch} x {args.channels} channels, {args.threads} threads, float32")
    print("| case | torch-harmonics ms | opflow ms | th / opflow |")
    print("|---|---|---|---|")
    for name, ref, ours in rows:
        print(f"| {name} | {1e3 * ref:.2f} | {1e3 * ours:.2f} | {ref / ours:.2f} |")


if __name__ == "__main__":
    main()
