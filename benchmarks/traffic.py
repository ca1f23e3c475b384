"""Memory traffic of one spectral convolution: the unfused torch.fft path against opflow's
``triton`` kernels, computed from the shapes (bytes moved to and from device memory).

The model behind ``docs/triton_kernels.md`` and ``benchmarks/spectral_conv_gpu.py``. Forward
pass only; float32 fields (4 bytes) and complex64 spectra (8 bytes). Each kernel is counted as
reading its inputs once and writing its outputs once from device memory (DRAM); re-reads that
the kernels' program order keeps in L2 are not counted.

**Unfused** — neuraloperator 2.0's ``SpectralConv`` on torch.fft:

1. ``rfftn``: read the field, write the half spectrum; a multi-dimensional FFT of these sizes
   runs one pass per axis (each later pass reads and writes the whole half spectrum);
2. ``fftshift`` of the non-last axes: read and write the half spectrum;
3. mixing (``einsum`` on the kept corner): read the kept input modes and the weights, write
   the kept output modes;
4. a zero output half spectrum is allocated (written) and the kept modes are scattered into
   it (written);
5. ``ifftshift``: read and write the half spectrum;
6. ``irfftn``: one pass per axis again; the last reads the half spectrum, writes the field.

**Fused** — opflow's ``triton`` backend (``opflow.spectral.backends.triton``): analysis along
the last axis reads the field and writes only the kept columns; each middle axis reads and
writes kept data; the last analysis stage is fused with the mixing (reads its input and the
weights, writes only the mixed kept modes); synthesis axis by axis from the kept modes, the
last step writing the output field.
"""

from __future__ import annotations

import dataclasses
import math

from opflow.spectral.fourier import n_kept

__all__ = ["TrafficReport", "memory_traffic"]

_REAL, _COMPLEX = 4, 8


@dataclasses.dataclass
class TrafficReport:
    """Bytes per stage of both paths; ``ratio = fused / unfused`` (lower is better)."""

    unfused: dict[str, int]
    fused: dict[str, int]

    @property
    def unfused_bytes(self) -> int:
        return sum(self.unfused.values())

    @property
    def fused_bytes(self) -> int:
        return sum(self.fused.values())

    @property
    def ratio(self) -> float:
        return self.fused_bytes / self.unfused_bytes

    def format(self) -> str:
        lines = [f"{'stage':<52} {'MB':>10}"]
        for name, stages in (("unfused (torch.fft)", self.unfused), ("fused (triton)", self.fused)):
            lines.append(f"{name}:")
            lines += [f"  {stage:<50} {b / 1e6:>10.2f}" for stage, b in stages.items()]
            lines.append(f"  {'total':<50} {sum(stages.values()) / 1e6:>10.2f}")
        lines.append(f"fused / unfused = {self.ratio:.3f}")
        return "\n".join(lines)


def memory_traffic(
    batch: int,
    in_channels: int,
    out_channels: int,
    grid: tuple[int, ...],
    n_modes: tuple[int, ...],
    output_grid: tuple[int, ...] | None = None,
) -> TrafficReport:
    """Device-memory bytes of one forward spectral convolution on both paths.

    ``n_modes`` counts modes as :class:`opflow.spectral.SpectralConv` does (the last axis keeps
    ``M//2 + 1``). ``output_grid`` defaults to ``grid``.
    """
    out_grid = tuple(output_grid or grid)
    d = len(grid)
    b, ci, co = batch, in_channels, out_channels
    kept = [n_kept(m, half=axis == d - 1) for axis, m in enumerate(n_modes)]
    n_kept_total = math.prod(kept)
    half_in = math.prod(grid[:-1]) * (grid[-1] // 2 + 1)
    half_out = math.prod(out_grid[:-1]) * (out_grid[-1] // 2 + 1)
    weights = ci * co * n_kept_total * _COMPLEX

    unfused = {
        "rfftn: read field": b * ci * math.prod(grid) * _REAL,
        "rfftn: write half spectrum": b * ci * half_in * _COMPLEX,
        f"rfftn: {d - 1} more pass(es) over the half spectrum": 2
        * (d - 1)
        * b
        * ci
        * half_in
        * _COMPLEX,
        "fftshift: read + write half spectrum": 2 * b * ci * half_in * _COMPLEX,
        "mixing: read kept modes": b * ci * n_kept_total * _COMPLEX,
        "mixing: read weights": weights,
        "mixing: write kept modes": b * co * n_kept_total * _COMPLEX,
        "zero output spectrum + scatter kept modes": b * co * (half_out + n_kept_total) * _COMPLEX,
        "ifftshift: read + write half spectrum": 2 * b * co * half_out * _COMPLEX,
        f"irfftn: {d - 1} pass(es) over the half spectrum": 2
        * (d - 1)
        * b
        * co
        * half_out
        * _COMPLEX,
        "irfftn: read half spectrum": b * co * half_out * _COMPLEX,
        "irfftn: write field": b * co * math.prod(out_grid) * _REAL,
    }

    fused: dict[str, int] = {}
    # analysis: the last axis first, then d-2 .. 1; the sizes after each step
    shape = list(grid)
    fused["analysis, last axis: read field"] = b * ci * math.prod(shape) * _REAL
    if d > 1:
        shape[-1] = kept[-1]
        fused["analysis, last axis: write kept columns"] = b * ci * math.prod(shape) * _COMPLEX
        for axis in range(d - 2, 0, -1):
            before = math.prod(shape)
            shape[axis] = kept[axis]
            fused[f"analysis, axis {axis}: read + write"] = (
                b * ci * (before + math.prod(shape)) * _COMPLEX
            )
        fused["fused last analysis + mixing: read input"] = b * ci * math.prod(shape) * _COMPLEX
    fused["fused last analysis + mixing: read weights"] = weights
    fused["fused last analysis + mixing: write mixed modes"] = b * co * n_kept_total * _COMPLEX
    # synthesis: axes 0 .. d-2 (complex), then the last axis to the real field
    shape = list(kept)
    for axis in range(d - 1):
        before = math.prod(shape)
        shape[axis] = out_grid[axis]
        fused[f"synthesis, axis {axis}: read + write"] = (
            b * co * (before + math.prod(shape)) * _COMPLEX
        )
    fused["synthesis, last axis: read"] = b * co * math.prod(shape) * _COMPLEX
    fused["synthesis, last axis: write field"] = b * co * math.prod(out_grid) * _REAL
    return TrafficReport(unfused=unfused, fused=fused)
