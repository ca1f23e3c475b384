"""SpecBoost's later-stage epoch against an FNO epoch of that stage's model (issue #30, item 3).

Data: the quickstart's Navier–Stokes file (``datasets/navier_stokes_1e-3_quickstart.yaml``, 64²,
made here if missing). Runs through opflow's trainer, ``--epochs`` per stage, interleaved in
one process on the same threads:

* ``FNO (stage 2 alone)``: ``configs/ns_specboost.yaml``'s second stage as a model of its own;
* ``SpecBoost stage 2``: the two-stage model of that config, the stage-2 epochs only, with the
  frozen stage 1's predictions computed once per stage (the trainer's default);
* ``SpecBoost stage 2, stage 1 rerun per batch``: the same with the cache switched off (stage
  1 runs forward on every batch, twice — the behaviour before the cache).

Reported: the median training seconds per epoch (from ``metrics.jsonl``, validation included)
and the ratio to the FNO epoch.

    python benchmarks/specboost_epoch.py [--epochs 3] [--out bench_specboost]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch

import opflow.train.trainer as trainer
from opflow.data.recipes import generate, load_recipe, output_paths
from opflow.train import load_config, train

ROOT = Path(__file__).resolve().parent.parent


def _epoch_seconds(run_dir: Path, first_epoch: int) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return statistics.median(r["seconds"] for r in rows if r["epoch"] >= first_epoch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="per stage")
    parser.add_argument("--out", default="bench_specboost")
    args = parser.parse_args()
    out = Path(args.out)
    recipe = load_recipe(ROOT / "datasets/navier_stokes_1e-3_quickstart.yaml")
    files = output_paths(recipe, out / "data" / "ns.nc")
    if not files[64].exists():
        files = generate(recipe, out / "data" / "ns.nc", progress=False)
    base = load_config(ROOT / "configs/ns_specboost.yaml", [f"data.path={files[64]}"])
    stage_2 = base.model.args["stages"][1]
    with_cache = trainer.begin_stage

    def without_cache(*a, **kw):  # the stage's scale as before, no cached prediction
        with_cache(*a, **kw)
        return None

    seconds = {}
    for name in ("FNO (stage 2 alone)", "SpecBoost stage 2", "SpecBoost stage 2, no cache"):
        config = load_config(ROOT / "configs/ns_specboost.yaml", [f"data.path={files[64]}"])
        run_dir = out / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
        config.training.output_dir = str(run_dir)
        config.training.epochs = 2 * args.epochs
        if name.startswith("FNO"):
            config.model.name, config.model.args = stage_2["name"], dict(stage_2["args"])
            config.training.epochs = args.epochs
        trainer.begin_stage = without_cache if name.endswith("no cache") else with_cache
        torch.manual_seed(0)
        train(config, resume="if-present", progress=False)
        seconds[name] = _epoch_seconds(run_dir, 0 if name.startswith("FNO") else args.epochs)
    trainer.begin_stage = with_cache
    fno = seconds["FNO (stage 2 alone)"]
    print("| run | s / epoch | vs FNO epoch |")
    print("|---|---|---|")
    for name, s in seconds.items():
        print(f"| {name} | {s:.2f} | {s / fno:.2f}x |")


if __name__ == "__main__":
    main()
