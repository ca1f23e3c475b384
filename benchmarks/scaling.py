"""Data-parallel scaling on paper: gradient all-reduce against compute, per training step.

This machine has 2 cores and no GPU, so the figures for N GPUs are a model, not a
measurement. Per step of data-parallel training (DDP) with global batch ``B`` on ``N`` GPUs:

    compute(N) = F * B / N / R                      F: fwd+bwd FLOPs per sample (counted here)
    comm(N)    = 2 (N-1)/N * 4P / W + 2 (N-1) a     ring all-reduce of P float32 gradients
    step(N)    = compute(N) + comm(N)               (no overlap: DDP overlaps some, so this
                                                     is the pessimistic bound)
    efficiency = compute(1) / (N * step(N))         strong scaling (B fixed)
    weak eff.  = compute(1) / (compute(1) + comm(N)) weak scaling (B per GPU fixed)

``F`` is counted with ``torch.utils.flop_counter`` on the CPU (matrix products and
convolutions; the FFTs of ``fft``-backend layers are not counted, which understates compute
and so overstates the communication's share). ``P`` is the model's parameter count. Assumed
hardware (``--rate``, ``--bandwidth``, ``--latency``): 10 TFLOP/s sustained per GPU (about
half an A100's float32 peak), 25 GB/s all-reduce bandwidth (one HDR InfiniBand link per node;
NVLink within a node is ~10x more), 10 us per ring step.

    python benchmarks/scaling.py [--rate 10e12] [--bandwidth 25e9] [--latency 10e-6]
"""

from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from opflow.models import build_model

# (name, model, args, grid, global batch): the README's and configs' sizes
CASES = [
    (
        "FNO quickstart 64x64",
        "FNO",
        {"n_modes": [12, 12], "hidden_channels": 24, "n_layers": 4},
        (64, 64),
        32,
    ),
    (
        "FNO 16 modes, width 32, 128x128",
        "FNO",
        {"n_modes": [16, 16], "hidden_channels": 32, "n_layers": 4},
        (128, 128),
        32,
    ),
    (
        "SFNO shallow water 33x64",
        "SFNO",
        {"lmax": 16, "hidden_channels": 32, "n_layers": 4, "grid": "equiangular"},
        (33, 64),
        16,
    ),
    (
        "SFNO ERA5 1 deg 181x360, lmax 64, diagonal (per-(l, m) weights)",
        "SFNO",
        {"lmax": 64, "hidden_channels": 64, "n_layers": 4, "grid": "equiangular"},
        (181, 360),
        16,
    ),
    (
        "SFNO ERA5 1 deg 181x360, lmax 64, isotropic (per-l weights)",
        "SFNO",
        {
            "lmax": 64,
            "hidden_channels": 64,
            "n_layers": 4,
            "grid": "equiangular",
            "operator": "isotropic",
        },
        (181, 360),
        16,
    ),
]
GPUS = [1, 2, 4, 8, 16, 32, 64]


def flops_and_parameters(name: str, args: dict, grid: tuple[int, int]) -> tuple[float, int]:
    model = build_model(name, in_channels=3, out_channels=3, **args)
    x = torch.randn(1, 3, *grid)
    with FlopCounterMode(display=False) as counter:
        model(x).sum().backward()
    return float(counter.get_total_flops()), sum(p.numel() for p in model.parameters())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=10e12, help="FLOP/s per GPU")
    parser.add_argument("--bandwidth", type=float, default=25e9, help="all-reduce bytes/s")
    parser.add_argument("--latency", type=float, default=10e-6, help="seconds per ring step")
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(
        f"assumed: {args.rate / 1e12:g} TFLOP/s per GPU, {args.bandwidth / 1e9:g} GB/s, "
        f"{args.latency * 1e6:g} us per ring step"
    )
    for label, name, model_args, grid, batch in CASES:
        flops, params = flops_and_parameters(name, model_args, grid)
        compute_1 = flops * batch / args.rate
        print(
            f"\n{label}: {params / 1e6:.2f} M parameters ({4 * params / 1e6:.1f} MB of "
            f"gradients), {flops / 1e9:.2f} GFLOP per sample, batch {batch}"
        )
        print(
            f"{'N':>4} {'compute ms':>11} {'all-reduce ms':>14} {'comm share':>11} "
            f"{'eff.':>6} {'weak eff.':>10}"
        )
        for n in GPUS:
            if n > batch:
                continue
            compute = compute_1 / n
            comm = 0.0
            if n > 1:
                comm = 2 * (n - 1) / n * 4 * params / args.bandwidth + 2 * (n - 1) * args.latency
            step = compute + comm
            print(
                f"{n:>4} {compute * 1e3:>11.3f} {comm * 1e3:>14.3f} {comm / step:>10.0%} "
                f"{compute_1 / (n * step):>6.0%} {compute_1 / (compute_1 + comm):>10.0%}"
            )


if __name__ == "__main__":
    main()
