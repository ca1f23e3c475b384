"""GELU forward and backward: opflow's C kernel vs torch's exact GELU, on the CPU.

Float32 tensors of the FNO's activation sizes (a 4 MiB chunk of 32 channels at 64², and the
64-channel lifting hidden layer), output into a preallocated buffer for both (no allocation
timed), candidates interleaved round by round; ratio = torch / opflow (> 1: opflow faster).

    python benchmarks/gelu.py
"""

from __future__ import annotations

import argparse
import statistics

import torch
from spectral_conv import interleaved_times, paired_ratio

from opflow import native
from opflow.layers.gelu import gelu, gelu_backward


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = parser.parse_args()
    capability = torch.backends.cpu.get_cpu_capability()
    print(f"torch {torch.__version__} ({capability}), kernel: {native.status('gelu')}")
    print("| shape | threads | pass | torch (ms) | opflow (ms) | ratio | paired ratio |")
    print("|---|---|---|---|---|---|---|")
    g = torch.Generator().manual_seed(0)
    for shape in ((8, 32, 4096), (8, 64, 4096)):
        x = 2 * torch.randn(shape, generator=g)
        grad = torch.randn(shape, generator=g)
        out = torch.empty_like(x)
        rows = {
            "fwd": {
                "torch": lambda x=x, out=out: torch.ops.aten.gelu.out(x, out=out),
                "opflow": lambda x=x, out=out: gelu(x, out=out),
            },
            "bwd": {
                "torch": lambda grad=grad, x=x, out=out: torch.ops.aten.gelu_backward.grad_input(
                    grad, x, grad_input=out
                ),
                "opflow": lambda grad=grad, x=x, out=out: gelu_backward(grad, x, out=out),
            },
        }
        for threads in args.threads:
            torch.set_num_threads(threads)
            for label, fns in rows.items():
                times = interleaved_times(fns, args.reps)
                med = {k: statistics.median(v) for k, v in times.items()}
                print(
                    f"| {'×'.join(map(str, shape))} | {threads} | {label} | "
                    f"{1e3 * med['torch']:.3f} | {1e3 * med['opflow']:.3f} | "
                    f"**{med['torch'] / med['opflow']:.2f}×** | "
                    f"{paired_ratio(times, 'torch', 'opflow'):.2f}× |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
