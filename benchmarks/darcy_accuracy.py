"""Accuracy: MgNO vs FNO (opflow) vs FNO (neuraloperator) on Darcy flow, same data and budget.

FNO's Darcy benchmark (a in {3, 12} from a thresholded GRF, f = 1), solved at 129x129 by
``opflow.solvers.darcy`` (recipe ``datasets/darcy_64.yaml``). All three models train at 65x65
on the same 1000 pairs with the same loss (relative H1), batch size, epochs, one-cycle
schedule and seed, through opflow's trainer (neuraloperator's FNO is wrapped as a registered
model); learning rates are each model's own (``configs/darcy_mgno.yaml``,
``configs/darcy_fno.yaml``). Evaluated on the 100 test pairs at 65x65 and zero-shot at
129x129 (the same coefficients, one 129x129 solve stored at both grids).

    python benchmarks/darcy_accuracy.py [--epochs 25] [--out bench_darcy]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from baselines import real_parameter_count  # registers neuralop.FNO

import opflow
from opflow.data.recipes import generate, load_recipe, output_paths
from opflow.evaluate import evaluate_run, format_table
from opflow.train import load_config, train

ROOT = Path(__file__).resolve().parent.parent
MODELS = {  # name: (config, overrides)
    "MgNO": ("configs/darcy_mgno.yaml", []),
    "FNO": ("configs/darcy_fno.yaml", []),
    "neuralop.FNO": ("configs/darcy_fno.yaml", ["model.name=neuralop.FNO"]),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--out", default="bench_darcy")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    recipe = load_recipe(ROOT / "datasets/darcy_64.yaml")
    paths = output_paths(recipe, out / "data" / "darcy.nc")
    if not all(p.exists() for p in paths.values()):
        t0 = time.perf_counter()
        generate(recipe, out / "data" / "darcy.nc")
        print(f"data generated in {time.perf_counter() - t0:.0f}s", flush=True)
    train_n, test_n = min(paths), max(paths)

    summary_path = out / "summary.json"
    rows = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    for name in args.models:
        config_path, overrides = MODELS[name]
        config = load_config(
            ROOT / config_path,
            [
                *overrides,
                f"data.path={paths[train_n]}",
                f"training.epochs={args.epochs}",
                f"training.output_dir={out / name.replace('.', '_')}",
            ],
        )
        run_dir = train(config, resume="if-present")
        # times from the run's own log, so a resumed run reports its full cost
        log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        seconds = [row["seconds"] for row in log]
        results = evaluate_run(run_dir, [paths[train_n], paths[test_n]])
        print(f"\n{name}:\n{format_table(results, [train_n, train_n])}", flush=True)
        rows[name] = {
            "params": real_parameter_count(opflow.load(run_dir).model),
            "epochs": len(log),
            # median and minimum: robust to epochs slowed by other work on the machine
            "seconds_per_epoch": round(statistics.median(seconds), 1),
            "seconds_per_epoch_min": round(min(seconds), 1),
            "rel_l2": results[0].rel_l2,
            "rel_h1": results[0].rel_h1,
            "rel_l2_2x": results[1].rel_l2,
            "rel_h1_2x": results[1].rel_h1,
        }
        summary_path.write_text(json.dumps(rows, indent=2))

    print(
        f"\n| model | params | epochs | s/epoch (median, min) | rel. L2 {train_n}² | "
        f"rel. H1 {train_n}² | "
        f"rel. L2 {test_n}² (zero-shot) | rel. H1 {test_n}² (zero-shot) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(
            f"| {name} | {r['params']:,} | {r['epochs']} | {r['seconds_per_epoch']:.0f}, "
            f"{r['seconds_per_epoch_min']:.0f} | "
            f"{r['rel_l2']:.4f} | {r['rel_h1']:.4f} | {r['rel_l2_2x']:.4f} | {r['rel_h1_2x']:.4f} |"
        )


if __name__ == "__main__":
    main()
