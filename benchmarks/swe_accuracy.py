"""Accuracy on the sphere: SFNO vs SphericalCNN vs a planar FNO on shallow-water data.

Data: ``datasets/shallow_water_quickstart.yaml`` (200 trajectories, hourly states, solved at
65x128, stored at 33x64 and 65x128). Every model trains through opflow's trainer on the 33x64
file for the same number of epochs (task: state at hour t -> hour t + 1; configs
``configs/swe_sfno.yaml``, ``configs/swe_spherical_cnn.yaml``, and the SFNO config with the model
swapped for a planar ``FNO`` — the baseline that treats latitude as a periodic axis). On the 20
test trajectories each model then rolls out 5 hours from the initial state, at 33x64 and
zero-shot at 65x128. Reported: WeatherBench-2 latitude-weighted RMSE of geopotential height (m)
and vorticity (1e-6 / s) after 1 and 5 hours, with persistence (the initial state) as reference.

    python benchmarks/swe_accuracy.py [--epochs 12] [--out bench_swe]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import xarray as xr
from baselines import real_parameter_count

import opflow
from opflow.data.recipes import generate, load_recipe, output_paths
from opflow.evaluate.weather import lat_weighted_rmse
from opflow.train import load_config, train

ROOT = Path(__file__).resolve().parent.parent
RECIPE = "datasets/shallow_water_quickstart.yaml"
MODELS = {
    "SFNO": ("configs/swe_sfno.yaml", []),
    "SphericalCNN": ("configs/swe_spherical_cnn.yaml", []),
    "FNO (planar)": (
        "configs/swe_sfno.yaml",
        [
            "model.name=FNO",
            "model.args={n_modes: [16, 32], hidden_channels: 32, n_layers: 4}",
        ],
    ),
}
HOURS = (1, 5)
N_TEST = 20


def _scores(prediction: xr.Dataset, truth: xr.Dataset, hours: tuple[int, ...]) -> dict[str, float]:
    """Mean over test trajectories of the lat-weighted RMSE at each lead time in ``hours``."""
    out = {}
    for lead in hours:
        for name, scale, label in (
            ("geopotential_height", 1.0, "z"),
            ("vorticity", 1e6, "vort"),
        ):
            rmse = lat_weighted_rmse(prediction[name].sel(time=lead), truth[name].sel(time=lead))
            out[f"{label}_{lead}h"] = scale * float(rmse.mean())
    return out


def evaluate(run_dir: Path | None, path: Path, hours: tuple[int, ...] = HOURS) -> dict[str, float]:
    """Roll out ``run_dir``'s surrogate (persistence when None) from the initial states of the
    last ``N_TEST`` trajectories (the configs' test split) and score it at the lead ``hours``."""
    with xr.open_dataset(path) as ds:
        truth = ds.isel(sample=slice(-N_TEST, None)).load()
    truth = truth.sortby("lat")  # the surrogate's xarray output has ascending coordinates
    state = truth.isel(time=[0])
    if run_dir is None:
        prediction = xr.concat([state.isel(time=0, drop=True)] * max(hours), dim="time")
    else:
        prediction = opflow.load(run_dir).rollout(state, steps=max(hours))
    prediction = prediction.assign_coords(time=truth["time"].values[1 : max(hours) + 1])
    return _scores(prediction, truth, hours)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--out", default="bench_swe")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    recipe = load_recipe(ROOT / RECIPE)
    paths = output_paths(recipe, out / "data" / "swe.nc")
    if not all(p.exists() for p in paths.values()):
        t0 = time.perf_counter()
        generate(recipe, out / "data" / "swe.nc")
        print(f"data generated in {time.perf_counter() - t0:.0f}s", flush=True)
    coarse, fine = paths[(33, 64)], paths[(65, 128)]
    summary_path = out / "summary.json"
    rows = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    rows["persistence"] = {"33x64": evaluate(None, coarse), "65x128": evaluate(None, fine)}
    for name in args.models:
        config_path, overrides = MODELS[name]
        run = out / name.split(" ")[0]
        config = load_config(
            ROOT / config_path,
            [
                f"data.path={coarse}",
                f"training.epochs={args.epochs}",
                f"training.output_dir={run}",
                *overrides,
            ],
        )
        run_dir = train(config, resume="if-present")
        log = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
        rows[name] = {
            "params": real_parameter_count(opflow.load(run_dir).model),
            "seconds_per_epoch": round(statistics.median(r["seconds"] for r in log), 1),
            "33x64": evaluate(run_dir, coarse),
            "65x128": evaluate(run_dir, fine),
        }
        summary_path.write_text(json.dumps(rows, indent=2))
        print(f"{name}: {rows[name]}", flush=True)

    print(
        "\n| model | params | s/epoch | grid | z RMSE 1 h (m) | z RMSE 5 h (m) "
        "| vorticity RMSE 1 h (1e-6/s) | vorticity RMSE 5 h (1e-6/s) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        for grid in ("33x64", "65x128"):
            s = r[grid]
            params = f"{r['params']:,}" if "params" in r else "-"
            speed = f"{r['seconds_per_epoch']:.0f}" if "seconds_per_epoch" in r else "-"
            label = grid if grid == "33x64" else f"{grid} (zero-shot)"
            print(
                f"| {name} | {params} | {speed} | {label} | {s['z_1h']:.2f} | {s['z_5h']:.2f} "
                f"| {s['vort_1h']:.3f} | {s['vort_5h']:.3f} |"
            )


if __name__ == "__main__":
    main()
