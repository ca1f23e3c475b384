"""Accuracy: opflow FNO vs neuraloperator FNO on Navier–Stokes (viscosity 1e-3), same budget.

The FNO paper's FNO-2D setting, scaled to run in under an hour on 2 cores: 1000 training
trajectories at 64x64, input the 10 steps t = 1..10, predict t = 11..20 autoregressively one
step at a time (loss over the whole rollout), 12 classical modes per axis (n_modes (24, 23)),
width 20, 4 layers. Both models go through the same opflow trainer (neuraloperator's FNO is
wrapped as a registered model), so data, order, schedule and seed are identical. Evaluated on
the 100 test trajectories at 64x64 and zero-shot at 128x128 (same initial conditions, one
128x128 solve stored at both grids).

    python benchmarks/ns_accuracy.py [--epochs 12] [--out bench_ns]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from baselines import real_parameter_count  # registers neuralop.FNO

import opflow
from opflow.data.recipes import generate, load_recipe, output_paths
from opflow.evaluate import evaluate_run, format_table
from opflow.schema import to_dict
from opflow.train import train
from opflow.train.config import config_from_dict

CONFIG = {
    "data": {
        "path": "",
        "input_variables": ["vorticity"],
        "t_in": 10,
        "t_out": 10,
        "time_start": 1,
        "windows": "first",
        "split": {"train": 1000, "val": 100, "test": 100},
    },
    "model": {
        "name": "FNO",
        "args": {"n_modes": [24, 23], "hidden_channels": 20, "n_layers": 4},
    },
    "loss": {"kind": "relative_lp"},
    "optimizer": {"name": "adam", "lr": 2.0e-3, "weight_decay": 1.0e-4},
    "scheduler": {"name": "cosine"},
    "training": {"epochs": 20, "batch_size": 20, "seed": 0, "rollout": True},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--out", default="bench_ns")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    recipe = load_recipe(Path(__file__).parent.parent / "datasets/navier_stokes_1e-3_multires.yaml")
    paths = output_paths(recipe, out / "data" / "ns.nc")
    if not all(p.exists() for p in paths.values()):
        t0 = time.perf_counter()
        generate(recipe, out / "data" / "ns.nc")
        print(f"data generated in {time.perf_counter() - t0:.0f}s", flush=True)

    rows = {}
    for name in ("FNO", "neuralop.FNO"):
        config = config_from_dict(CONFIG)
        config.data.path = str(paths[64])
        config.model.name = name
        config.training.epochs = args.epochs
        config.training.output_dir = str(out / name.replace(".", "_"))
        config = load_config_from(config)
        run_dir = train(config, resume="if-present")
        # training time from the run's own log, so a resumed run reports its full cost
        log = (run_dir / "metrics.jsonl").read_text().splitlines()
        seconds = sum(json.loads(line)["seconds"] for line in log)
        results = evaluate_run(run_dir, [paths[64], paths[128]], out_dir=run_dir / "evaluation")
        print(f"\n{name}: trained in {seconds:.0f}s\n{format_table(results, [64, 64])}", flush=True)
        rows[name] = {
            "train_seconds": round(seconds, 1),
            "test_rel_l2_64": results[0].rel_l2,
            "test_rel_l2_128_zero_shot": results[1].rel_l2,
            "params": real_parameter_count(opflow.load(run_dir).model),
        }
    print("\n| model | params | train time (s) | test rel. L2 64² | zero-shot 128² | 128²/64² |")
    print("|---|---|---|---|---|---|")
    for name, r in rows.items():
        ratio = r["test_rel_l2_128_zero_shot"] / r["test_rel_l2_64"]
        print(
            f"| {name} | {r['params']} | {r['train_seconds']:.0f} | {r['test_rel_l2_64']:.4f} | "
            f"{r['test_rel_l2_128_zero_shot']:.4f} | {ratio:.2f} |"
        )
    (out / "summary.json").write_text(json.dumps(rows, indent=2))


def load_config_from(config):
    """Round-trip through the schema so the edited config is validated like a file."""
    return config_from_dict(to_dict(config))


if __name__ == "__main__":
    main()
