"""Multi-resolution training: does training on 64² + 128² beat 64² alone at 128² and 256²?

Data: ``datasets/navier_stokes_1e-5_multires.yaml`` (solved at 256², stored at 64², 128²,
256²; the 256² truth has 0.5% of its norm above the 64² band), ``--samples`` trajectories.
FNO runs from ``configs/quickstart.yaml``'s model (12 modes, 4 layers, width 24, periodic
embedding): on the 64² file, on the 64² file for twice the epochs (the optimizer steps of the
next run), and on the 64² and 128² files (``data.path`` a list: each batch from one grid).
Each is evaluated on the test split at 64², 128² and 256² by ``opflow evaluate``'s code:
relative L2, its part above the 64² training band, and the baseline "predict at 64² and
interpolate".

    python benchmarks/multires_training.py [--samples 100] [--epochs 20] [--out bench_multires]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from opflow.data.recipes import generate, load_recipe, output_paths
from opflow.evaluate import evaluate_run
from opflow.train import load_config, train

ROOT = Path(__file__).resolve().parent.parent
RECIPE = ROOT / "datasets/navier_stokes_1e-5_multires.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", default="bench_multires")
    args = parser.parse_args()
    out = Path(args.out)
    recipe = dataclasses.replace(load_recipe(RECIPE), n_samples=args.samples)
    files = output_paths(recipe, out / "data" / "ns.nc")
    if not all(p.exists() for p in files.values()):
        started = time.perf_counter()
        files = generate(recipe, out / "data" / "ns.nc", progress=False)
        seconds = time.perf_counter() - started
        print(f"data: {args.samples} samples at 64/128/256 in {seconds:.0f} s")
    n_test = max(1, args.samples // 10)
    split = f"{{train: {args.samples - 2 * n_test}, val: {n_test}, test: {n_test}}}"
    # name: (files, epochs, run folder); the 128² pairs double an epoch's optimizer steps, so
    # 64² alone also runs twice the epochs: the same number of steps
    runs = {
        "64² only": ([files[64]], args.epochs, "single"),
        "64² only, 2x epochs (same steps)": ([files[64]], 2 * args.epochs, "single_2x"),
        "64² + 128²": ([files[64], files[128]], args.epochs, "multi"),
    }
    rows = []
    for name, (paths, epochs, folder) in runs.items():
        run_dir = out / folder
        path = str(paths[0]) if len(paths) == 1 else "[" + ", ".join(map(str, paths)) + "]"
        config = load_config(
            ROOT / "configs/quickstart.yaml",
            [
                f"data.path={path}",
                f"data.split={split}",
                f"training.epochs={epochs}",
                f"training.output_dir={run_dir}",
            ],
        )
        started = time.perf_counter()
        train(config, resume="if-present", progress=False)
        seconds = time.perf_counter() - started
        results = evaluate_run(run_dir, [files[64], files[128], files[256]])
        rows.append((name, seconds, results))
    print(_table(rows))


def _table(rows) -> str:
    lines = [
        "| training | train s | grid | rel. L2 | above the 64² band | interpolation: total | "
        "above |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, seconds, results in rows:
        for r in results:
            sr = r.super_resolution or {}
            above = sr.get("rel_l2_above_band")
            lines.append(
                f"| {name} | {seconds:.0f} | {r.grid[0]}² | {r.rel_l2:.4f} | "
                + (f"{above:.4f} | " if above is not None else "— | ")
                + (
                    f"{sr['baseline_rel_l2']:.4f} | {sr['baseline_above_band']:.4f} |"
                    if sr
                    else "— | — |"
                )
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
