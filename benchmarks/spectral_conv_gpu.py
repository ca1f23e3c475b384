"""SpectralConv on a CUDA GPU: opflow's fused Triton kernels vs the torch.fft path vs
neuraloperator, forward and forward+backward, with achieved memory bandwidth.

Run on a machine with a CUDA GPU and Triton (torch's CUDA wheels bring it):

    python benchmarks/spectral_conv_gpu.py [--sizes 64 128 256 512 1024] [--channels 32 64 128]

Each row: medians of CUDA-event timings over repetitions interleaved between the candidates
(one process), the ratios neuraloperator / triton and fft / triton (> 1: the fused kernels are
faster), and the forward's achieved bandwidth: the bytes of opflow's memory-traffic model
(``benchmarks/traffic.py``) over the measured time, against the device's
peak (from its memory clock and bus width). Without a GPU the script prints the traffic model
for the benchmark's shapes and stops.
"""

from __future__ import annotations

import argparse
import statistics

import torch
from spectral_conv import _fwd, _fwd_bwd
from traffic import memory_traffic

from opflow.spectral import SpectralConv


def peak_bandwidth_gbs(device: int = 0) -> float:
    """Theoretical DRAM bandwidth: 2 transfers per memory clock over the bus width."""
    props = torch.cuda.get_device_properties(device)
    return 2 * props.memory_clock_rate * 1e3 * props.memory_bus_width / 8 / 1e9


def cuda_medians(fns: dict, reps: int) -> dict[str, float]:
    """Median seconds per callable, timed with CUDA events, interleaved repetition by repetition."""
    for fn in fns.values():
        fn()  # warm-up: Triton compiles here, cuFFT plans are made here
    torch.cuda.synchronize()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize()
            times[name].append(start.elapsed_time(end) / 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def _layers(channels: int, modes: int):
    from neuralop.layers.spectral_convolution import SpectralConv as NeuralopSpectralConv

    fused = SpectralConv(channels, channels, (modes, modes), backend="triton").cuda()
    fft = SpectralConv(channels, channels, (modes, modes), backend="fft").cuda()
    fft.load_state_dict(fused.state_dict())
    neuralop = NeuralopSpectralConv(channels, channels, (modes, modes)).cuda()
    return {"neuralop": neuralop, "fft": fft, "triton": fused}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1024])
    parser.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--modes", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args()

    print("Memory-traffic model, forward, batch", args.batch, "(MB; fused / unfused)")
    print("| grid | channels | modes | unfused MB | fused MB | fused / unfused |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        for c in args.channels:
            for m in args.modes:
                r = memory_traffic(args.batch, c, c, (n, n), (m, m))
                print(
                    f"| {n}² | {c} | {m} | {r.unfused_bytes / 1e6:.1f} | "
                    f"{r.fused_bytes / 1e6:.1f} | {r.ratio:.3f} |"
                )
    if not torch.cuda.is_available():
        print("\nno CUDA device: timings need a GPU (the kernels' correctness is tested on the "
              "CPU with TRITON_INTERPRET=1, see tests/test_triton.py)")  # fmt: skip
        return

    peak = peak_bandwidth_gbs()
    print(f"\n{torch.cuda.get_device_name()}, peak DRAM bandwidth {peak:.0f} GB/s")
    print("| grid | channels | modes | pass | neuralop ms | fft ms | triton ms | "
          "vs neuralop | vs fft | triton GB/s (% peak) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        for c in args.channels:
            for m in args.modes:
                layers = _layers(c, m)
                x = torch.randn(args.batch, c, n, n, device="cuda", requires_grad=True)
                traffic = memory_traffic(args.batch, c, c, (n, n), (m, m)).fused_bytes
                for label, make in (("fwd", _fwd), ("fwd+bwd", _fwd_bwd)):
                    t = cuda_medians({k: make(v, x) for k, v in layers.items()}, args.reps)
                    bandwidth = ""
                    if label == "fwd":
                        gbs = traffic / t["triton"] / 1e9
                        bandwidth = f"{gbs:.0f} ({100 * gbs / peak:.0f}%)"
                    print(
                        f"| {n}² | {c} | {m} | {label} | {1e3 * t['neuralop']:.3f} | "
                        f"{1e3 * t['fft']:.3f} | {1e3 * t['triton']:.3f} | "
                        f"**{t['neuralop'] / t['triton']:.2f}×** | {t['fft'] / t['triton']:.2f}× | "
                        f"{bandwidth} |"
                    )
                del layers, x
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
