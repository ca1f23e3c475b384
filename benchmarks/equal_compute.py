"""The paper methods against the FNO at equal compute, over seeds (issue #33).

Every contender of a problem trains through opflow's trainer on the same data, in two views:

* **equal epochs**: every contender for ``--epochs`` epochs (SpecBoost splits them evenly
  between its stages, as ``configs/ns_specboost.yaml`` does);
* **equal wall time**: the budget is the reference FNO's wall time for ``--epochs`` epochs
  (its equal-epochs run, which serves both views); every other contender gets
  ``round(epochs * T_ref / T_c)`` epochs, with ``T_c`` its own wall time for ``--epochs``
  epochs, both measured in seed 0's equal-epochs runs (one process, 2 threads, nothing else
  running). Epochs follow from the budget and the schedules (cosine / one-cycle) are scaled
  to them, as every schedule spans the whole run. Each run's own wall time is kept; the
  tables give the fastest seed's (the least disturbed: the 2 cores are shared with whatever
  else runs, which lengthens a run but does not change its epochs).

Each (contender, view) is trained with every seed of ``--seeds`` (the data and split are
fixed; the seed draws the initial weights and the batch order) and the table gives the mean
± sample standard deviation of the test error. A difference from the reference is called
*beyond noise* when it exceeds two standard deviations of the difference of two single runs,
``2 sqrt(s_c² + s_ref²)``.

Problems (data from the repository's recipes, made on first use):

* ``ns-1e-5``, ``ns-1e-4``: Navier–Stokes w(t) -> w(t + 1) (``datasets/navier_stokes_1e-5_
  quickstart.yaml``, ``..._1e-4_...``; 160 training trajectories, 64² and 128²): FNO with 12
  and 32 modes per axis, SpecBoost (stages of 12 and 32 modes), LocalNO. Test relative L2 at
  64², zero-shot at 128², the share of the 64² error energy at |k| >= 8; LocalNO at 128² both
  with its stencils kept on the training grid (its default, resolution-consistent) and
  rebuilt for the finer spacing (the paper's kernels; same weights).
* ``darcy``: MgNO vs FNO (``datasets/darcy_64.yaml``, 1000 training pairs, 65² and 129²):
  relative L2 and H1.
* ``swe``: shallow water on the sphere (``datasets/shallow_water_10h.yaml``: hourly states
  for 10 hours, 33x64 and 65x128): SFNO vs SphericalCNN vs planar FNO trained on one-hour
  steps, rolled out 10 hours from the 20 test initial states; latitude-weighted RMSE of
  geopotential height and vorticity per lead hour, beside persistence. A plot of the RMSE
  against lead time (mean ± std over seeds) goes to ``<out>/swe/rmse_per_lead.png``.

    python benchmarks/equal_compute.py --problem ns-1e-5 [--epochs 12] [--seeds 0 1 2]
    python benchmarks/equal_compute.py --problem darcy --epochs 10
    python benchmarks/equal_compute.py --problem swe --epochs 10
    python benchmarks/equal_compute.py --problem swe --epochs 10 --table   # print the tables only

Results accumulate in ``<out>/summary.json`` (default ``bench_equal``); a finished run is not
trained again, so an interrupted benchmark resumes where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from baselines import real_parameter_count
from ns_models import high_wavenumber_share, zero_shot_with_per_grid_stencils
from swe_accuracy import N_TEST as SWE_TEST
from swe_accuracy import evaluate as swe_rollout_scores

import opflow
from opflow.data.recipes import generate, load_recipe, output_paths
from opflow.evaluate import evaluate_run
from opflow.train import load_config, train

ROOT = Path(__file__).resolve().parent.parent
SWE_LEADS = tuple(range(1, 11))  # hours


@dataclass(frozen=True)
class Contender:
    config: str
    overrides: tuple[str, ...] = ()
    stages: int = 1  # SpecBoost: epochs are split evenly between the stages


@dataclass(frozen=True)
class Problem:
    recipe: str
    reference: str  # the FNO whose wall time is the budget
    contenders: dict[str, Contender]
    scores: Callable[[str, Path, list[Path]], dict[str, float]]
    columns: tuple[tuple[str, str], ...]  # (score key, column title) shown in the table


def _ns_scores(name: str, run_dir: Path, paths: list[Path]) -> dict[str, float]:
    coarse, fine = paths
    results = evaluate_run(run_dir, [coarse, fine])
    scores = {
        "rel_l2": results[0].rel_l2,
        "rel_l2_2x": results[1].rel_l2,
        "high_k_share": high_wavenumber_share(run_dir, coarse),
    }
    if name.startswith("LocalNO"):
        scores["rel_l2_2x_per_grid_stencils"] = zero_shot_with_per_grid_stencils(run_dir, fine)
    return scores


def _darcy_scores(name: str, run_dir: Path, paths: list[Path]) -> dict[str, float]:
    results = evaluate_run(run_dir, paths)
    return {
        "rel_l2": results[0].rel_l2,
        "rel_h1": results[0].rel_h1,
        "rel_l2_2x": results[1].rel_l2,
        "rel_h1_2x": results[1].rel_h1,
    }


def _swe_scores(name: str, run_dir: Path, paths: list[Path]) -> dict[str, float]:
    coarse, fine = paths
    fine_scores = swe_rollout_scores(run_dir, fine, SWE_LEADS)
    return swe_rollout_scores(run_dir, coarse, SWE_LEADS) | {
        f"{k}_2x": v for k, v in fine_scores.items()
    }


_NS_CONTENDERS = {
    "FNO, 12 modes": Contender("configs/quickstart.yaml"),
    "FNO, 32 modes": Contender("configs/quickstart.yaml", ("model.args.n_modes=[32, 32]",)),
    "SpecBoost(12, 32 modes)": Contender("configs/ns_specboost.yaml", stages=2),
    "LocalNO": Contender("configs/ns_local_no.yaml"),
}
_NS_COLUMNS = (
    ("rel_l2", "rel. L2 64²"),
    ("rel_l2_2x", "rel. L2 128² (zero-shot)"),
    ("high_k_share", "error share at \\|k\\| >= 8"),
    ("rel_l2_2x_per_grid_stencils", "128², stencils rebuilt for the grid (LocalNO)"),
)
PROBLEMS = {
    f"ns-{viscosity}": Problem(
        recipe=f"datasets/navier_stokes_{viscosity}_quickstart.yaml",
        reference="FNO, 12 modes",
        contenders=_NS_CONTENDERS,
        scores=_ns_scores,
        columns=_NS_COLUMNS,
    )
    for viscosity in ("1e-5", "1e-4")
} | {
    "darcy": Problem(
        recipe="datasets/darcy_64.yaml",
        reference="FNO",
        contenders={
            "FNO": Contender("configs/darcy_fno.yaml"),
            "MgNO": Contender("configs/darcy_mgno.yaml"),
        },
        scores=_darcy_scores,
        columns=(
            ("rel_l2", "rel. L2 65²"),
            ("rel_h1", "rel. H1 65²"),
            ("rel_l2_2x", "rel. L2 129² (zero-shot)"),
            ("rel_h1_2x", "rel. H1 129² (zero-shot)"),
        ),
    ),
    "swe": Problem(
        recipe="datasets/shallow_water_10h.yaml",
        reference="FNO (planar)",
        contenders={
            "FNO (planar)": Contender(
                "configs/swe_sfno.yaml",
                (
                    "model.name=FNO",
                    "model.args={n_modes: [16, 32], hidden_channels: 32, n_layers: 4}",
                ),
            ),
            "SFNO": Contender("configs/swe_sfno.yaml"),
            "SphericalCNN": Contender("configs/swe_spherical_cnn.yaml"),
        },
        scores=_swe_scores,
        columns=tuple(
            (f"{label}_{hours}h", f"{title} {hours} h")
            for label, title in (("z", "z RMSE (m)"), ("vort", "vorticity RMSE (1e-6/s)"))
            for hours in (1, 5, 10)
        )
        + (("z_10h_2x", "z RMSE (m) 10 h, 65x128 (zero-shot)"),),
    ),
}


def _data_paths(problem: Problem, out: Path) -> list[Path]:
    """The recipe's files, coarsest first (generated on first use)."""
    recipe = load_recipe(ROOT / problem.recipe)
    paths = output_paths(recipe, out / "data" / "data.nc")
    if not all(p.exists() for p in paths.values()):
        t0 = time.perf_counter()
        generate(recipe, out / "data" / "data.nc")
        print(f"data generated in {time.perf_counter() - t0:.0f}s", flush=True)
    return [paths[key] for key in sorted(paths)]


def _epochs_for_budget(epochs: int, seconds: float, reference_seconds: float, stages: int) -> int:
    """Epochs that fit the reference's wall time at this contender's measured pace, a
    multiple of the number of stages (at least one epoch per stage)."""
    fitted = epochs * reference_seconds / seconds
    return max(stages, stages * round(fitted / stages))


def _train_and_score(
    problem: Problem, name: str, epochs: int, seed: int, paths: list[Path], run: Path
) -> dict:
    contender = problem.contenders[name]
    config = load_config(
        ROOT / contender.config,
        [
            f"data.path={paths[0]}",
            f"training.epochs={epochs}",
            f"training.output_dir={run}",
            f"training.seed={seed}",
            *contender.overrides,
        ],
    )
    resumed = (run / "metrics.jsonl").exists()  # an interrupted run: its time is partial
    t0 = time.perf_counter()
    run_dir = train(config, resume="if-present", progress=False)
    seconds = time.perf_counter() - t0
    return {
        "epochs": epochs,
        "seconds": round(seconds, 1),
        "resumed": resumed,
        "params": real_parameter_count(opflow.load(run_dir).model),
        "scores": problem.scores(name, run_dir, paths),
    }


def run_problem(key: str, epochs: int, seeds: list[int], out: Path, rows: dict, save) -> None:
    """Train every (contender, view, seed) of problem ``key`` missing from ``rows``."""
    problem = PROBLEMS[key]
    paths = _data_paths(problem, out / key)
    if key == "swe":
        rows.setdefault("swe persistence", {"scores": _swe_scores("", None, paths)})
    names = [problem.reference, *(n for n in problem.contenders if n != problem.reference)]
    budget_key = f"{key} budget {epochs}"
    for seed in seeds:
        for view in ("epochs", "time"):
            for name in names:
                row_key = f"{key} | {view} {epochs} | {name} | seed {seed}"
                if row_key in rows:
                    continue
                stages = problem.contenders[name].stages
                if view == "epochs" or name == problem.reference:
                    n = epochs
                else:  # the pace comes from seed 0's equal-epochs runs
                    pace = rows[budget_key]
                    n = _epochs_for_budget(epochs, pace[name], pace[problem.reference], stages)
                if view == "time" and name == problem.reference:
                    rows[row_key] = rows[f"{key} | epochs {epochs} | {name} | seed {seed}"]
                    continue
                run = out / key / f"{view}{epochs}" / name.replace(" ", "_") / f"seed{seed}"
                rows[row_key] = _train_and_score(problem, name, n, seed, paths, run)
                if view == "epochs" and seed == seeds[0]:
                    rows.setdefault(budget_key, {})[name] = rows[row_key]["seconds"]
                save()
                print(f"{row_key}: {rows[row_key]}", flush=True)


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else math.nan)


def tables(key: str, epochs: int, rows: dict) -> str:
    """Markdown tables of problem ``key``: one per view, mean ± std over the seeds."""
    problem = PROBLEMS[key]
    lines = []
    if key == "swe" and "swe persistence" in rows:
        scores = rows["swe persistence"]["scores"]
        lines.append(
            "persistence: "
            + ", ".join(f"{title} {scores[col]:.3g}" for col, title in problem.columns)
        )
    for view, title in (("epochs", "equal epochs"), ("time", "equal wall time")):
        runs = {
            name: [
                r for k, r in rows.items() if k.startswith(f"{key} | {view} {epochs} | {name} |")
            ]
            for name in problem.contenders
        }
        if not any(runs.values()):
            continue
        reference = runs[problem.reference]
        header = " | ".join(t for _, t in problem.columns)
        lines += [
            "",
            f"{title} (budget: {epochs} epochs of the reference, {problem.reference})",
            f"| model | params | epochs | wall time (s, fastest seed) | seeds | {header} |",
            "|---|---|---|---|---|" + "---|" * len(problem.columns),
        ]
        for name, found in runs.items():
            if not found:
                continue
            cells = []
            for column, _ in problem.columns:
                if column not in found[0]["scores"]:  # a score of one model only
                    cells.append("")
                    continue
                mean, std = _mean_std([r["scores"][column] for r in found])
                cell = f"{mean:.4g} ± {std:.2g}"
                if name != problem.reference and column in reference[0]["scores"]:
                    ref_mean, ref_std = _mean_std([r["scores"][column] for r in reference])
                    change = 100 * (mean / ref_mean - 1)
                    beyond = abs(mean - ref_mean) > 2 * math.hypot(std, ref_std)
                    cell += f" ({change:+.0f}%{'*' if beyond else ''})"
                cells.append(cell)
            seconds = min(r["seconds"] for r in found)  # the least disturbed run
            lines.append(
                f"| {name} | {found[0]['params']:,} | {found[0]['epochs']} | {seconds:.0f} | "
                f"{len(found)} | " + " | ".join(cells) + " |"
            )
    lines.append("\n(* the difference from the reference exceeds 2 sqrt(s² + s_ref²))")
    return "\n".join(lines)


def plot_swe_leads(epochs: int, rows: dict, path: Path) -> Path:
    """RMSE against lead hour at 33x64, one panel per variable and view: each model's mean
    over the seeds with a ± std band, and persistence."""
    from matplotlib.figure import Figure

    problem = PROBLEMS["swe"]
    fig = Figure(figsize=(10, 7), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True)
    leads = list(SWE_LEADS)
    for col, (view, title) in enumerate((("epochs", "equal epochs"), ("time", "equal wall time"))):
        for row, (label, quantity) in enumerate(
            (("z", "height RMSE (m)"), ("vort", "vorticity RMSE (1e-6/s)"))
        ):
            ax = axes[row][col]
            if "swe persistence" in rows:
                scores = rows["swe persistence"]["scores"]
                ax.plot(leads, [scores[f"{label}_{h}h"] for h in leads], "k:", label="persistence")
            for index, name in enumerate(problem.contenders):
                found = [
                    r["scores"]
                    for k, r in rows.items()
                    if k.startswith(f"swe | {view} {epochs} | {name} |")
                ]
                if not found:
                    continue
                values = np.array([[s[f"{label}_{h}h"] for h in leads] for s in found])
                mean, std = (
                    values.mean(0),
                    values.std(0, ddof=1) if len(found) > 1 else 0 * values[0],
                )
                ax.plot(
                    leads,
                    mean,
                    color=f"C{index}",
                    marker="o",
                    ms=3,
                    label=f"{name} ({len(found)} seeds)",
                )
                ax.fill_between(leads, mean - std, mean + std, color=f"C{index}", alpha=0.25)
            ax.set_title(f"{title}: {quantity}")
            ax.set_xlabel("lead (hours)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(
        f"Shallow water, 33x64: 10-hour rollouts from the {SWE_TEST} test states "
        f"(budget: the planar FNO's {epochs} epochs)"
    )
    fig.savefig(path, dpi=110)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", required=True, choices=list(PROBLEMS))
    parser.add_argument("--epochs", type=int, default=12, help="the reference FNO's epochs")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="bench_equal")
    parser.add_argument("--table", action="store_true", help="print the tables, train nothing")
    args = parser.parse_args()
    torch.set_num_threads(2)
    out = Path(args.out)
    summary_path = out / "summary.json"
    rows = json.loads(summary_path.read_text()) if summary_path.exists() else {}

    def save() -> None:
        summary_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = summary_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        tmp.replace(summary_path)

    if not args.table:
        run_problem(args.problem, args.epochs, args.seeds, out, rows, save)
    print(tables(args.problem, args.epochs, rows))
    if args.problem == "swe":
        print("plot:", plot_swe_leads(args.epochs, rows, out / "swe" / "rmse_per_lead.png"))


if __name__ == "__main__":
    main()
