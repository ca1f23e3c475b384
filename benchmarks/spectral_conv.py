"""SpectralConv and FNO speed: opflow vs neuraloperator vs the plain torch.fft path.

The candidates of a row are measured in one process, interleaved repetition by repetition, and
reported as medians with the ratio neuraloperator / opflow (> 1: opflow faster): the ratio of
the medians, and the paired ratio (median over rounds of the two calls made back to back),
which cancels most of the VM's speed drift. Each (table, grid, modes) runs in a fresh Python
process: glibc's malloc adapts its thresholds to the sizes freed before, so rows measured after
others (the 128² SpectralConv's 33 MB tensors before the 64² FNO) would inherit an allocator
state that depends on the order of the rows; a fresh process is the state a training run has.

    python benchmarks/spectral_conv.py                  # default allocator
    MALLOC_MMAP_MAX_=0 python benchmarks/spectral_conv.py   # glibc keeps freed memory

Setup (issue #2): batch 16, 32 -> 32 channels for SpectralConv; FNO with hidden 32, 4 layers,
1 -> 1 channels; n_modes (16, 16) and (32, 32); 2 threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import torch

from opflow.interop import from_neuralop
from opflow.spectral import SpectralConv
from opflow.spectral.backends import gemm


def _fwd(module, x):
    def run():
        with torch.no_grad():
            module(x)

    return run


def _fwd_bwd(module, x):
    """Forward, then backward of a fixed upstream gradient (the layer's own cost, no loss)."""
    params = [p for p in module.parameters() if p.requires_grad]
    with torch.no_grad():
        upstream = torch.randn_like(module(x))

    def run():
        for p in params:
            p.grad = None
        x.grad = None
        module(x).backward(upstream)

    return run


def interleaved_times(fns: dict[str, callable], reps: int) -> dict[str, list[float]]:
    """Seconds of each callable per round, run in turn so that drifts hit all alike."""
    for fn in fns.values():
        fn()  # warm-up: caches, first-touch allocations
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return times


def interleaved_medians(fns: dict[str, callable], reps: int) -> dict[str, float]:
    """Median seconds of each callable (see :func:`interleaved_times`)."""
    return {k: statistics.median(v) for k, v in interleaved_times(fns, reps).items()}


def paired_ratio(times: dict[str, list[float]], slow: str, fast: str) -> float:
    """Median over rounds of ``slow / fast`` measured back to back in the same round.

    The VM's speed drifts by tens of percent over seconds; a ratio of two calls made one
    after the other cancels most of that drift, where a ratio of medians does not.
    """
    return statistics.median(a / b for a, b in zip(times[slow], times[fast]))


def gemm_flops(n: int, modes: tuple[int, int], batch: int, channels: int) -> float:
    """Flops of the gemm path's transforms for one forward (analysis + synthesis)."""
    rows = modes[0] // 2 + 1  # axis 0 is computed for k_0 >= 0 only
    m_half = modes[1] // 2 + 1
    images = batch * channels
    first_axis = 2 * images * (2 * rows) * n * n  # (2 rows, n) @ (n, n) per image
    last_axis = 2 * (images * rows) * (2 * n) * (4 * m_half)  # direct + mirrored, complex
    return 2 * (first_axis + last_axis)


def measured_peak() -> float:
    a = torch.randn(2048, 2048)
    a @ a
    t = min(_timed(lambda: a @ a) for _ in range(3))
    return 2 * 2048**3 / t


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def spectral_conv_rows(n: int, m: int, reps: int, peak: float) -> None:
    """The fwd and fwd+bwd rows of the SpectralConv table for an ``n``² grid, ``m`` modes."""
    from neuralop.layers.spectral_convolution import SpectralConv as NeuralopConv

    x = torch.randn(16, 32, n, n, requires_grad=True)
    ours = SpectralConv(32, 32, (m, m), backend="auto")
    ref = SpectralConv(32, 32, (m, m), backend="fft")
    theirs = NeuralopConv(32, 32, (m, m))
    for label, make in (("fwd", _fwd), ("fwd+bwd", _fwd_bwd)):
        times = interleaved_times(
            {"neuralop": make(theirs, x), "fft": make(ref, x), "opflow": make(ours, x)}, reps
        )
        r = {k: statistics.median(v) for k, v in times.items()}
        paired = paired_ratio(times, "neuralop", "opflow")
        rate = ""
        if label == "fwd":
            xd = x.detach()

            def transforms(xd=xd, modes=(m, m), grid=(n, n)):
                gemm.synthesize(gemm.analyze(xd, modes), modes, 32, grid)

            t_tr = min(_timed(transforms) for _ in range(3))
            flops = gemm_flops(n, (m, m), 16, 32) / t_tr
            rate = f"{flops / 1e9:.0f} ({100 * flops / peak:.0f}%)"
        print(
            f"| {n}² | {m} | {label} | {1e3 * r['neuralop']:.1f} | {1e3 * r['fft']:.1f} | "
            f"{1e3 * r['opflow']:.1f} | **{r['neuralop'] / r['opflow']:.2f}×** | "
            f"{paired:.2f}× | {r['fft'] / r['opflow']:.2f}× | {rate} |",
            flush=True,
        )


def fno_rows(n: int, m: int, reps: int) -> None:
    """The fwd and fwd+bwd rows of the FNO table for an ``n``² grid, ``m`` modes."""
    from neuralop.models import FNO as NeuralopFNO

    x = torch.randn(16, 1, n, n)
    theirs = NeuralopFNO(n_modes=(m, m), in_channels=1, out_channels=1, hidden_channels=32)
    ours = from_neuralop(theirs)
    for label, make in (("fwd", _fwd), ("fwd+bwd", _fwd_bwd)):
        times = interleaved_times({"neuralop": make(theirs, x), "opflow": make(ours, x)}, reps)
        r = {k: statistics.median(v) for k, v in times.items()}
        paired = paired_ratio(times, "neuralop", "opflow")
        print(
            f"| {n}² | {m} | {label} | {1e3 * r['neuralop']:.0f} | "
            f"{1e3 * r['opflow']:.0f} | **{r['neuralop'] / r['opflow']:.2f}×** | "
            f"{paired:.2f}× |",
            flush=True,
        )


def _run_case(case: str, args: argparse.Namespace) -> None:
    """Rows of one table for one (grid, modes), in a fresh process (see the module docstring)."""
    command = [sys.executable, __file__, "--case", case, "--reps", str(args.reps)]
    command += ["--fno-reps", str(args.fno_reps), "--peak", str(args.peak)]
    subprocess.run(command, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--modes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--fno-reps", type=int, default=5)
    parser.add_argument("--no-fno", action="store_true")
    parser.add_argument(
        "--auto-sweep", action="store_true", help="only the gemm-vs-fft sweep behind backend='auto'"
    )
    parser.add_argument("--case", help=argparse.SUPPRESS)  # internal: "sc:64:16" or "fno:64:16"
    parser.add_argument("--peak", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    if args.case:
        kind, n, m = args.case.split(":")
        if kind == "sc":
            spectral_conv_rows(int(n), int(m), args.reps, args.peak or measured_peak())
        else:
            reps = args.fno_reps if int(n) < 256 else max(3, args.fno_reps // 2)
            fno_rows(int(n), int(m), reps)
        return

    allocator = "MALLOC_MMAP_MAX_=0" if os.environ.get("MALLOC_MMAP_MAX_") == "0" else "default"
    print(f"torch {torch.__version__}, threads 2, allocator: {allocator}")
    args.peak = measured_peak()
    print(f"measured float32 GEMM peak (2048^3): {args.peak / 1e9:.0f} GFLOP/s\n")

    if args.auto_sweep:
        auto_sweep(args.reps)
        return

    cases = [(n, m) for n in args.sizes for m in args.modes if m <= n // 2]
    print("SpectralConv, batch 16, 32->32 channels (ms, median)")
    print(
        "| grid | modes | pass | neuralop | torch.fft | opflow | ratio vs neuralop | "
        "paired ratio | ratio vs fft | GEMM GFLOP/s (% peak) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|", flush=True)
    for n, m in cases:
        _run_case(f"sc:{n}:{m}", args)

    if args.no_fno:
        return
    print("\nFNO, hidden 32, 4 layers, 1->1 channels, batch 16 (ms, median; same weights)")
    print("| grid | modes | pass | neuralop | opflow | ratio | paired ratio |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for n, m in cases:
        _run_case(f"fno:{n}:{m}", args)


def auto_sweep(reps: int) -> None:
    """fwd+bwd time of the fft backend over the gemm backend, by grid and kept modes."""
    print("gemm vs fft, SpectralConv fwd+bwd, batch 8, 16->16 channels; ratio fft/gemm (>1: gemm)")
    print("| grid | n_modes | kept fraction (last axis) | fft ms | gemm ms | fft/gemm |")
    print("|---|---|---|---|---|---|")
    for n in (32, 64, 128, 256):
        for m in sorted({n // 8, n // 4, n // 2, n}):
            x = torch.randn(8, 16, n, n, requires_grad=True)
            convs = {b: SpectralConv(16, 16, (m, m), backend=b) for b in ("fft", "gemm")}
            r = interleaved_medians({b: _fwd_bwd(c, x) for b, c in convs.items()}, reps)
            frac = (m // 2 + 1) / (n // 2 + 1)
            print(
                f"| {n}² | {m} | {frac:.2f} | {1e3 * r['fft']:.1f} | {1e3 * r['gemm']:.1f} | "
                f"{r['fft'] / r['gemm']:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
