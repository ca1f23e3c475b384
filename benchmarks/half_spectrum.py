"""The inverse transform of LocalNO's multiplier: opflow's ``irfftn_mode_major`` (a complex
transform of half the length, packed by a C kernel) vs torch's ``irfftn`` of the same
mode-major spectrum (the plain torch.fft path it replaced), on the CPU.

The spectrum is ``(M, C, B)`` complex64 (batch 16, 32 channels), as the multiplier holds it.
``warm``: the same input every round; ``cold``: four inputs in turn, and the last outputs kept
alive, so input and output are mostly out of cache as in a training step. Candidates are
interleaved round by round; ratio = torch / opflow (> 1: opflow faster).

    python benchmarks/half_spectrum.py
"""

from __future__ import annotations

import argparse
import statistics

import torch
from spectral_conv import interleaved_times, paired_ratio

from opflow import native
from opflow.run.execution import retain_freed_cpu_memory
from opflow.spectral.half_spectrum import irfftn_mode_major

BATCH, CHANNELS = 16, 32


def _mode_major(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(BATCH, CHANNELS, n, n, generator=g)
    return torch.fft.rfftn(x, dim=(2, 3), norm="forward").flatten(2).permute(2, 1, 0).contiguous()


def _torch_irfftn(modes: torch.Tensor, n: int) -> torch.Tensor:
    spectrum = modes.permute(2, 1, 0).reshape(BATCH, CHANNELS, n, n // 2 + 1)
    return torch.fft.irfftn(spectrum, s=(n, n), dim=(2, 3), norm="forward")


def _rounds(n: int, pool: list[torch.Tensor], reps: int) -> dict[str, list[float]]:
    """Interleaved times of both candidates, each taking the inputs of ``pool`` in turn."""
    candidates = {
        "torch": lambda modes: _torch_irfftn(modes, n),
        "opflow": lambda modes: irfftn_mode_major(modes, (n, n)),
    }
    kept: list[torch.Tensor] = []
    turns = dict.fromkeys(candidates, 0)

    def call(name: str):
        def run():
            kept.append(candidates[name](pool[turns[name] % len(pool)]))
            turns[name] += 1
            del kept[:-6]  # a few outputs alive: allocations move as in a step

        return run

    return interleaved_times({name: call(name) for name in candidates}, reps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    retain_freed_cpu_memory()  # as the training engine does: no fresh pages per call
    print(f"torch {torch.__version__}, kernel: {native.status('half_spectrum')}, "
          f"{args.threads} threads")  # fmt: skip
    print("| grid | inputs | torch irfftn (ms) | opflow (ms) | ratio | paired ratio |")
    print("|---|---|---|---|---|---|")
    for n in (64, 128):
        inputs = [_mode_major(n, seed) for seed in range(4)]
        expected = _torch_irfftn(inputs[0], n)
        error = (irfftn_mode_major(inputs[0], (n, n)) - expected).abs().max() / expected.abs().max()
        for label, pool in (("warm", inputs[:1]), ("cold", inputs)):
            times = _rounds(n, pool, args.reps)
            med = {k: statistics.median(v) for k, v in times.items()}
            print(
                f"| {n}² | {label} | {1e3 * med['torch']:.2f} | {1e3 * med['opflow']:.2f} | "
                f"**{med['torch'] / med['opflow']:.2f}×** | "
                f"{paired_ratio(times, 'torch', 'opflow'):.2f}× |",
                flush=True,
            )
        print(f"|   | max relative difference | {error:.1e} | | | |")


if __name__ == "__main__":
    main()
