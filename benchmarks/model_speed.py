"""Every model's training step beside its baseline: time of forward + backward, and peak memory.

Time: forward, then backward of a fixed upstream gradient, the models of a group run in turn
in one process (interleaved rounds, so the VM's drifts hit all alike), median ms and the
median of the per-round ratios. Memory: a fresh process per model measures the growth of its
peak resident set over one step (built model and input already resident): activations,
gradients and workspace. 2 threads, float32, CPU. Every process keeps freed memory for the
next tensor as opflow's trainer does (``training.retain_cpu_memory``,
:func:`opflow.run.execution.retain_freed_cpu_memory`), for all models alike;
``--release-cpu-memory`` measures the C library's default instead.

Groups (batch 16, width 32, 4 layers unless the config says otherwise):

* ``plane 64²`` and ``plane 128²``: opflow FNO (16 modes) and LocalNO (the same plus the
  differential and DISCO branches, radius 1/16), neuraloperator 2.0's FNO and LocalNO
  (``benchmarks/baselines.py``);
* ``darcy 65²``: MgNO and FNO as ``configs/darcy_mgno.yaml`` and ``configs/darcy_fno.yaml``;
* ``sphere 64x128`` and ``sphere 128x256``: opflow SFNO and neuraloperator's SFNO, the same
  degrees kept (``lmax = mmax = nlat / 2``) and the same per-degree (isotropic) weights;
* ``SHT pair 128x256``: forward and inverse transform (16 x 32 fields, ``lmax = 64``), opflow
  against torch-harmonics' ``RealSHT`` / ``InverseRealSHT`` (time only).

    python benchmarks/model_speed.py [--reps 9] [--groups "plane 64²" ...] [--no-memory]
                                     [--release-cpu-memory]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import NeuralopFNO, NeuralopLocalNO  # noqa: E402
from spectral_conv import _fwd_bwd, interleaved_times  # noqa: E402

from opflow.models import FNO, SFNO, LocalNO, MgNO  # noqa: E402
from opflow.run.execution import retain_freed_cpu_memory  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BATCH, WIDTH = 16, 32


def _config_args(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / name).read_text())["model"]["args"]


def _plane(n: int) -> dict:
    common = {"in_channels": 1, "out_channels": 1, "hidden_channels": WIDTH, "n_layers": 4}
    modes = {"n_modes": (16, 16)}
    return {
        "opflow FNO": lambda: FNO(**modes, **common),
        "opflow LocalNO": lambda: LocalNO(**modes, **common, disco_radius=0.0625),
        "neuralop FNO": lambda: NeuralopFNO(**modes, **common),
        "neuralop LocalNO": lambda: NeuralopLocalNO(
            **modes, **common, train_shape=(n, n), disco_radius=0.0625
        ),
    }


def _sphere(nlat: int) -> dict:
    from neuralop.models import SFNO as NeuralopSFNO

    lmax = nlat // 2
    return {
        "opflow SFNO": lambda: SFNO(
            in_channels=1, out_channels=1, lmax=lmax, mmax=lmax, hidden_channels=WIDTH,
            n_layers=4, operator="isotropic",
        ),
        "neuralop SFNO": lambda: NeuralopSFNO(
            n_modes=(lmax, 2 * lmax), in_channels=1, out_channels=1, hidden_channels=WIDTH,
            n_layers=4,
        ),
    }  # fmt: skip


def _darcy() -> dict:
    mgno, fno = _config_args("darcy_mgno.yaml"), _config_args("darcy_fno.yaml")
    return {
        "opflow FNO": lambda: FNO(in_channels=1, out_channels=1, **fno),
        "opflow MgNO": lambda: MgNO(in_channels=1, out_channels=1, **mgno),
    }


# group: (input shape, {model: constructor}, [(slower, faster), ...] ratios reported)
GROUPS = {
    "plane 64²": ((BATCH, 1, 64, 64), lambda: _plane(64)),
    "plane 128²": ((BATCH, 1, 128, 128), lambda: _plane(128)),
    "darcy 65²": ((BATCH, 1, 65, 65), _darcy),
    "sphere 64x128": ((BATCH, 1, 64, 128), lambda: _sphere(64)),
    "sphere 128x256": ((BATCH, 1, 128, 256), lambda: _sphere(128)),
}
RATIOS = {
    "plane 64²": [("opflow LocalNO", "opflow FNO"), ("neuralop LocalNO", "opflow LocalNO"),
                  ("neuralop FNO", "opflow FNO")],
    "plane 128²": [("opflow LocalNO", "opflow FNO"), ("neuralop LocalNO", "opflow LocalNO"),
                   ("neuralop FNO", "opflow FNO")],
    "darcy 65²": [("opflow MgNO", "opflow FNO")],
    "sphere 64x128": [("neuralop SFNO", "opflow SFNO")],
    "sphere 128x256": [("neuralop SFNO", "opflow SFNO")],
}  # fmt: skip
MEMORY_PAIRS = {  # opflow model: the baseline whose step must not use less memory
    "opflow FNO": "neuralop FNO",
    "opflow LocalNO": "neuralop LocalNO",
    "opflow SFNO": "neuralop SFNO",
}


def _sht_pair() -> dict:
    from torch_harmonics import InverseRealSHT, RealSHT

    from opflow.spectral.sphere import SphereGrid, isht, sht

    grid, lmax = SphereGrid(128, 256), 64
    forward = RealSHT(128, 256, lmax=lmax, mmax=lmax, grid="equiangular")
    inverse = InverseRealSHT(128, 256, lmax=lmax, mmax=lmax, grid="equiangular")
    x = torch.randn(BATCH, WIDTH, 128, 256)

    def opflow_pair():
        with torch.no_grad():
            isht(sht(x, grid, lmax, lmax), grid)

    def th_pair():
        with torch.no_grad():
            inverse(forward(x))

    return {"opflow SHT pair": opflow_pair, "torch-harmonics SHT pair": th_pair}


def time_group(name: str, reps: int) -> dict[str, list[float]]:
    if name == "SHT pair 128x256":
        runs = _sht_pair()
    else:
        shape, models = GROUPS[name]
        torch.manual_seed(0)
        x = torch.randn(shape)
        runs = {label: _fwd_bwd(build(), x) for label, build in models().items()}
    return interleaved_times(runs, reps)  # warms each up first


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def peak_step_memory(group: str, label: str) -> float:
    """MB by which one step raises the resident set above its level before the step (built
    model and input resident): the high-water mark is reset first (Linux ``clear_refs``)."""
    shape, models = GROUPS[group]
    torch.manual_seed(0)
    model, x = models()[label](), torch.randn(shape)
    before = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    model(x).square().mean().backward()
    return (_status_kib("VmHWM") - before) / 1024


def _memory_in_fresh_process(group: str, label: str, release: bool) -> float:
    out = subprocess.run(
        [sys.executable, __file__, "--memory-of", group, label]
        + (["--release-cpu-memory"] if release else []),
        capture_output=True, text=True, check=True, timeout=600,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--groups", nargs="*", default=[*GROUPS, "SHT pair 128x256"])
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--release-cpu-memory", action="store_true")
    parser.add_argument("--memory-of", nargs=2, metavar=("GROUP", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if not args.release_cpu_memory:
        retain_freed_cpu_memory()
    if args.memory_of:
        print(json.dumps(peak_step_memory(*args.memory_of)))
        return
    print("| group | model | fwd+bwd ms (median) | peak step memory MB |")
    print("|---|---|---|---|")
    ratio_lines, memory = [], {}
    for group in args.groups:
        times = time_group(group, args.reps)
        for label, seconds in times.items():
            mb = None
            if not args.no_memory and group in GROUPS:
                mb = memory[(group, label)] = _memory_in_fresh_process(
                    group, label, args.release_cpu_memory
                )
            cell = f"{mb:.0f}" if mb is not None else "—"
            print(f"| {group} | {label} | {1e3 * statistics.median(seconds):.1f} | {cell} |")
        pairs = RATIOS.get(group, [("torch-harmonics SHT pair", "opflow SHT pair")])
        for slow, fast in pairs:
            paired = statistics.median(a / b for a, b in zip(times[slow], times[fast]))
            ratio_lines.append(f"| {group} | {slow} / {fast} | **{paired:.2f}x** |")
        for mine, theirs in MEMORY_PAIRS.items():
            if (group, mine) in memory and (group, theirs) in memory:
                share = memory[(group, mine)] / memory[(group, theirs)]
                ratio_lines.append(f"| {group} | memory {mine} / {theirs} | {share:.2f}x |")
    print("\n| group | time ratio (median of per-round ratios) | |\n|---|---|---|")
    print("\n".join(ratio_lines))


if __name__ == "__main__":
    main()
