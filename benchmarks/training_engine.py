"""The training engine on the quickstart: precision (fp32 vs bf16-mixed) and lazily read data.

Both parts train ``configs/quickstart.yaml`` (FNO, 64x64 Navier–Stokes, 160 training pairs x
8 windows) through ``opflow.train``, each case in a fresh process, in one run of this script:

* ``precision``: the full quickstart budget (12 epochs) in fp32 and in bf16-mixed; prints the
  test relative L2 of each and the median seconds per epoch. bf16 arithmetic on a CPU without
  AMX is emulated, so no speed-up is expected here: the figure that matters is the error.
* ``steps``: where the bf16 time goes: one fwd+bwd step of the quickstart FNO (batch 32),
  median of 8, interleaved in one process: fused fp32 nodes, the composed modules in fp32
  (what autocast and torch.compile run), and the composed modules under bf16 autocast.
* ``data``: 3 epochs of the same run on the data held in memory, read lazily from the
  quickstart's netCDF file, and read lazily from a zarr copy written by opflow (one sample
  per chunk) with 0 and with 2 reader processes; prints the median epoch time of each and its
  ratio to the in-memory epoch.

    python benchmarks/training_engine.py [--parts precision steps data] [--out bench_engine]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _case(out: Path, name: str, data: Path, overrides: list[str]) -> dict:
    """Train in a fresh process; returns the epoch times and the test error."""
    run = out / "runs" / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    script = f"""
import json, sys
from opflow.evaluate import evaluate_run
from opflow.train import load_config, train
config = load_config({str(ROOT / "configs/quickstart.yaml")!r}, {overrides!r} + [
    "data.path={data}", "training.output_dir={run}", "training.threads=2"])
run = train(config, progress=False)
rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
test = evaluate_run(run, [{str(data)!r}], checkpoint="last")[0].rel_l2
print("RESULT", json.dumps({{"seconds": [r["seconds"] for r in rows], "test": test}}))
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=ROOT
    )
    line = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")][-1]
    return json.loads(line[len("RESULT ") :])


def _quickstart_data(out: Path) -> Path:
    from opflow.data.recipes import generate, load_recipe, output_paths

    recipe = load_recipe(ROOT / "datasets/navier_stokes_1e-3_quickstart.yaml")
    paths = output_paths(recipe, out / "data" / "ns.nc")
    if not paths[64].exists():
        generate(recipe, out / "data" / "ns.nc")
    return paths[64]


def precision(out: Path, data: Path) -> None:
    print("precision: quickstart, 12 epochs, test split at 64x64")
    print(f"{'precision':<12} {'test rel. L2':>12} {'s / epoch':>10}")
    results = {}
    for name in ("fp32", "bf16-mixed"):
        results[name] = _case(out, name, data, [f"training.precision={name}"])
        r = results[name]
        print(f"{name:<12} {r['test']:>12.4f} {statistics.median(r['seconds']):>10.2f}")
    ratio = results["bf16-mixed"]["test"] / results["fp32"]["test"]
    print(f"bf16-mixed / fp32 test error: {ratio:.2f}x")


def steps() -> None:
    import contextlib
    import time
    from unittest import mock

    import torch

    import opflow.layers.channel_mlp
    import opflow.models.fno
    from opflow.models import FNO

    torch.set_num_threads(2)
    torch.manual_seed(0)
    model = FNO(
        n_modes=(12, 12),
        in_channels=1,
        out_channels=1,
        hidden_channels=24,
        n_layers=4,
        positional_embedding="periodic",
    )
    x = torch.randn(32, 1, 64, 64)

    def composed():  # what autocast and torch.compile see: the plain torch modules
        stack = contextlib.ExitStack()
        for module in (opflow.layers.channel_mlp, opflow.models.fno):
            stack.enter_context(mock.patch.object(module, "plain_ops_only", lambda x: True))
        return stack

    cases = {
        "fp32, fused nodes": contextlib.nullcontext,
        "fp32, composed modules": composed,
        "bf16 autocast (composed)": lambda: torch.autocast("cpu", dtype=torch.bfloat16),
    }
    times = {name: [] for name in cases}
    for _ in range(8):
        for name, context in cases.items():
            started = time.perf_counter()
            with context():
                model(x).float().square().mean().backward()
            times[name].append(time.perf_counter() - started)
    print("steps: quickstart FNO fwd+bwd, batch 32, median of 8 interleaved")
    for name, values in times.items():
        print(f"{name:<28} {statistics.median(values) * 1e3:>7.0f} ms")


def data_loading(out: Path, data: Path) -> None:
    from opflow.data.io import open_dataset, write_dataset

    zarr = out / "data" / "ns_64.zarr"
    if not zarr.exists():
        write_dataset(open_dataset(data).load(), zarr)
    epochs = ["training.epochs=3"]
    lazy = ["data.max_memory_gb=1e-6"]  # the file is "larger than memory": read lazily
    cases = [
        ("in memory (netCDF)", data, []),
        ("lazy netCDF, 0 readers", data, [*lazy, "training.workers=0"]),
        ("lazy zarr, 0 readers", zarr, [*lazy, "training.workers=0"]),
        ("lazy zarr, 2 readers", zarr, [*lazy, "training.workers=2"]),
    ]
    print("data: quickstart, 3 epochs; median epoch time (training + validation)")
    print(f"{'data':<26} {'s / epoch':>10} {'x memory':>9}")
    base = None
    for name, path, overrides in cases:
        r = _case(out, name, path, [*epochs, *overrides])
        seconds = statistics.median(r["seconds"])
        base = base or seconds
        print(f"{name:<26} {seconds:>10.2f} {seconds / base:>8.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", nargs="+", default=["precision", "steps", "data"])
    parser.add_argument("--out", default="bench_engine")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    data = _quickstart_data(out)
    if "precision" in args.parts:
        precision(out, data)
    if "steps" in args.parts:
        steps()
    if "data" in args.parts:
        data_loading(out, data)


if __name__ == "__main__":
    main()
