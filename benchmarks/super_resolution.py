"""Super-resolution, model by model: each model trained at the coarsest grid of data that hold
detail above it, evaluated at the training grid, 2x and 4x beside "predict at the training grid,
then interpolate".

Data (one solve on the finest grid, coarser files from it; ``--*-samples`` trajectories each):

* Navier–Stokes ν = 1e-5, ``datasets/navier_stokes_1e-5_multires.yaml``: 64², 128², 256²
  (subsampled); FNO (``configs/quickstart.yaml``), LocalNO (``configs/ns_local_no.yaml``, its
  stencils kept on the training grid, the default), SpecBoost (``configs/ns_specboost.yaml``).
* Darcy, ``datasets/darcy_multires.yaml``: 65², 129², 257² (subsampled, closed grids: the
  band is split in cosine modes); MgNO (``configs/darcy_mgno.yaml``) and FNO
  (``configs/darcy_fno.yaml``).
* Shallow water, ``datasets/shallow_water_multires.yaml``: 33x64, 65x128, 129x256 (each grid
  the degrees it resolves); SFNO (``configs/swe_sfno.yaml``).

Each model trains for ``--epoch-factor`` times its config's epochs (less data than the configs
assume) and is scored by ``opflow evaluate``'s code on the test split: relative L2, its part
above the training grid's band, the same for the interpolation baseline, and the truth's
content above the band (what there is to find).

    python benchmarks/super_resolution.py [--ns-samples 64] [--darcy-samples 400]
        [--swe-samples 64] [--epoch-factor 2] [--only ns,darcy,swe] [--out bench_superres]
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

# problem: (recipe, file stem, {model: config}, training-split overrides)
PROBLEMS = {
    "ns": (
        "navier_stokes_1e-5_multires",
        "ns.nc",
        {
            "FNO": "quickstart.yaml",
            "LocalNO": "ns_local_no.yaml",
            "SpecBoost": "ns_specboost.yaml",
        },
    ),
    "darcy": (
        "darcy_multires",
        "darcy.nc",
        {"MgNO": "darcy_mgno.yaml", "FNO": "darcy_fno.yaml"},
    ),
    "swe": ("shallow_water_multires", "swe.nc", {"SFNO": "swe_sfno.yaml"}),
}
TITLES = {
    "ns": "Navier–Stokes ν = 1e-5",
    "darcy": "Darcy",
    "swe": "shallow water (sphere)",
}


def _data(problem: str, samples: int, out: Path) -> dict:
    recipe_name, stem, _ = PROBLEMS[problem]
    recipe = load_recipe(ROOT / "datasets" / f"{recipe_name}.yaml")
    recipe = dataclasses.replace(recipe, n_samples=samples)
    files = output_paths(recipe, out / "data" / stem)
    if not all(p.exists() for p in files.values()):
        started = time.perf_counter()
        files = generate(recipe, out / "data" / stem, progress=False)
        print(f"{recipe_name}: {samples} samples in {time.perf_counter() - started:.0f} s")
    return files


def _grid_key(grid) -> tuple:
    return tuple(grid) if isinstance(grid, (list, tuple)) else (grid,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns-samples", type=int, default=64)
    parser.add_argument("--darcy-samples", type=int, default=400)
    parser.add_argument("--swe-samples", type=int, default=64)
    parser.add_argument("--epoch-factor", type=float, default=2.0)
    parser.add_argument("--only", default="ns,darcy,swe")
    parser.add_argument("--out", default="bench_superres")
    args = parser.parse_args()
    out = Path(args.out)
    samples = {"ns": args.ns_samples, "darcy": args.darcy_samples, "swe": args.swe_samples}
    tables = []
    for problem in args.only.split(","):
        files = _data(problem, samples[problem], out)
        grids = sorted(files, key=_grid_key)
        n = samples[problem]
        n_test = max(2, n // 10)
        split = f"{{train: {n - 2 * n_test}, val: {n_test}, test: {n_test}}}"
        rows = []
        for model, config_name in PROBLEMS[problem][2].items():
            run_dir = out / problem / model
            config_path = ROOT / "configs" / config_name
            epochs = load_config(config_path).training.epochs
            config = load_config(
                config_path,
                [
                    f"data.path={files[grids[0]]}",
                    f"data.split={split}",
                    f"training.epochs={max(1, round(args.epoch_factor * epochs))}",
                    f"training.output_dir={run_dir}",
                ],
            )
            started = time.perf_counter()
            train(config, resume="if-present", progress=False)
            seconds = time.perf_counter() - started
            results = evaluate_run(run_dir, [files[g] for g in grids])
            rows.append((model, config.training.epochs, seconds, results))
        tables.append(_table(TITLES[problem], n, rows))
        print(tables[-1], flush=True)
    (out / "super_resolution.md").write_text("\n\n".join(tables) + "\n")


def _table(title: str, samples: int, rows) -> str:
    lines = [
        f"**{title}** ({samples} trajectories)",
        "",
        "| model | epochs | train s | grid | rel. L2 | above the training band | "
        "interpolation: total | above | truth above the band | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, epochs, seconds, results in rows:
        for r in results:
            grid = "x".join(map(str, r.grid))
            sr = r.super_resolution
            if not sr:
                lines.append(
                    f"| {model} | {epochs} | {seconds:.0f} | {grid} (train) | {r.rel_l2:.4f} "
                    "| — | — | — | — | — |"
                )
                continue
            ratio = sr["rel_l2_above_band"] / max(sr["baseline_above_band"], 1e-30)
            if sr["truth_above_band"] < 1e-3:
                verdict = "consistency only"
            elif sr["beats_interpolation_above_band"]:
                verdict = f"better ({ratio:.2f}x)"
            else:
                verdict = f"no better ({ratio:.2f}x)"
            lines.append(
                f"| {model} | {epochs} | {seconds:.0f} | {grid} | {r.rel_l2:.4f} | "
                f"{sr['rel_l2_above_band']:.4f} | {sr['baseline_rel_l2']:.4f} | "
                f"{sr['baseline_above_band']:.4f} | {sr['truth_above_band']:.4f} | {verdict} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
