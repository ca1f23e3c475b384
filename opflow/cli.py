"""The ``opflow`` command: a thin layer over the Python API.

opflow generate RECIPE.yaml -o FILE.nc         make a dataset (opflow.data.recipes)
opflow train CONFIG.yaml [--set k=v] [--resume] [--nproc N]  train (opflow.train.train)
opflow evaluate RUN_DIR --data FILE.nc ...      evaluate at any resolution
opflow export RUN_DIR -o FILE [--grid N ...]   ONNX / torch.export file for non-Python codes
opflow quickstart [--out DIR]                   all three on the built-in default
opflow gp-solve CONFIG.yaml [--set k=v]         solve a PDE with GP-HM (opflow.gp.run)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from opflow.errors import OpflowError

__all__ = ["main"]

_REPO = Path(__file__).resolve().parent.parent


def _find(relative: str) -> Path:
    """``relative`` under the working directory, else under the source checkout."""
    for base in (Path.cwd(), _REPO):
        if (base / relative).exists():
            return base / relative
    raise OpflowError(
        f"Cannot find {relative}",
        f"{relative} in the working directory or in the opflow checkout",
        "run from the opflow repository root",
    )


def _progress(args) -> bool | None:
    """Progress bars: off with --quiet, else on when stderr is a terminal (``None``)."""
    return False if args.quiet else None


def _generate(args) -> None:
    from opflow.data.recipes import generate, load_recipe

    recipe = load_recipe(args.recipe)
    for n, path in generate(recipe, args.output, progress=_progress(args)).items():
        shape = n if isinstance(n, tuple) else (n, n)  # (nlat, nlon) on the sphere
        print(f"wrote {path} ({shape[0]}x{shape[1]})")


def _train(args) -> None:
    from opflow.run.distributed import launched_by_torchrun
    from opflow.train import load_config, train

    config = load_config(args.config, args.set)  # bad configs fail here, before any launch
    if args.nproc > 1 and not launched_by_torchrun():
        _launch_torchrun(args)
        return
    run_dir = train(config, resume=args.resume, progress=_progress(args))
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run directory: {run_dir}")


def _launch_torchrun(args) -> None:
    """``opflow train --nproc N ...`` is ``torchrun --standalone --nproc-per-node N -m opflow
    train ...`` (one node; for several, call torchrun yourself: README), run in this process
    so that a failed worker is reported in one line rather than as torchrun's traceback."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    from opflow.run.distributed import DistributedError

    argv = [
        "--standalone",
        f"--nproc-per-node={args.nproc}",
        "-m",
        "opflow",
        *(["--quiet"] if args.quiet else []),
        "train",
        args.config,
        *[item for value in args.set or [] for item in ("--set", value)],
        *(["--resume"] if args.resume else []),
    ]
    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        rank, failure = err.get_first_failure()
        how = (
            f"was stopped by {failure.signal_name()}"
            if failure.exitcode < 0
            else f"exited with status {failure.exitcode}"
        )
        raise DistributedError(
            f"the {args.nproc}-process training run failed: rank {rank} (pid {failure.pid}) "
            f"{how} first, and the others were stopped",
            "every process to finish",
            "read that rank's error above; the last checkpoint is intact, so rerun with "
            "--resume (with any number of processes)",
        ) from None


def _evaluate(args) -> None:
    from opflow.evaluate import evaluate_run, format_table

    results = evaluate_run(
        args.run_dir,
        args.data,
        split=args.split,
        out_dir=args.out,
        climatology=args.climatology,
        device=args.device,
    )
    print(format_table(results))
    print(f"predictions, plots and results.json in {Path(results[0].predictions).parent}")


def _export(args) -> None:
    from opflow.export import export_run

    result = export_run(
        args.run_dir, args.output, args.format, args.grid and tuple(args.grid), args.checkpoint
    )
    grid = "x".join(str(n) for n in result.grid)
    print(
        f"wrote {result.path} ({result.format}, grid {grid}, any batch size; matches torch to "
        f"{result.max_relative_difference:.1e} of the prediction's RMS) and {result.sidecar}"
    )


def _quickstart(args) -> None:
    from opflow.data.recipes import generate, load_recipe, output_paths
    from opflow.evaluate import evaluate_run, format_table
    from opflow.train import load_config, train

    out = Path(args.out)
    recipe = load_recipe(_find("datasets/navier_stokes_quickstart.yaml"))
    paths = output_paths(recipe, out / "data" / "ns.nc")
    if not all(p.exists() for p in paths.values()):
        print(f"[1/3] generating {recipe.name} at {sorted(paths)} ...", flush=True)
        generate(recipe, out / "data" / "ns.nc", progress=_progress(args))
    else:
        print(f"[1/3] data present in {out / 'data'}", flush=True)
    train_res = min(paths)
    overrides = [
        f"data.path={paths[train_res]}",
        f"training.output_dir={out / 'run'}",
        *(args.set or []),
    ]
    config = load_config(_find("configs/quickstart.yaml"), overrides)
    print(f"[2/3] training {config.model.name} at {train_res}x{train_res} ...", flush=True)
    run_dir = train(config, resume="if-present", progress=_progress(args))
    print("[3/3] evaluating at every resolution ...", flush=True)
    results = evaluate_run(run_dir, [paths[n] for n in sorted(paths)])
    print()
    print(format_table(results, train_grid=[train_res, train_res]))
    evaluation = Path(results[0].predictions).parent
    print(f"\nplots: {evaluation}/fields_*.png, {evaluation}/error_spectrum.png")


def _gp_solve(args) -> None:
    import xarray as xr

    from opflow.gp.run import load_gp_config, run

    config = load_gp_config(args.config, args.set)
    solution, out = run(config, progress=_progress(args))
    with xr.open_dataset(out / "solution.nc") as written:
        attrs = dict(written.attrs)
    error = f", relative L2 {attrs['rel_l2']:.3e}" if "rel_l2" in attrs else ""
    selected = attrs.get("selected_iteration")
    state = f" (state of iteration {selected})" if selected is not None else ""
    print(
        f"{config.name}: {attrs['iterations']} iterations in {solution.seconds:.1f} s{error}{state}"
    )
    print(f"solution.nc, history.json, history.png, solution.png in {out}")


def main(argv: list[str] | None = None) -> int:
    import opflow
    from opflow.run.logs import configure_console

    parser = argparse.ArgumentParser(
        prog="opflow",
        description="Neural operators for PDEs: make data, train, evaluate at any resolution.",
        epilog="Run 'opflow COMMAND --help' for a command's options. Errors are one line and "
        "exit with status 2.",
    )
    parser.add_argument("--version", action="version", version=f"opflow {opflow.__version__}")
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="no progress bars or per-epoch lines"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("generate", help="make a dataset from a recipe (datasets/*.yaml)")
    p.add_argument("recipe", help="recipe file, e.g. datasets/navier_stokes_quickstart.yaml")
    p.add_argument(
        "-o", "--output", required=True, help="output .nc/.h5/.zarr path (one file per grid)"
    )
    p.set_defaults(func=_generate)

    p = sub.add_parser("train", help="train a model from a config file (configs/*.yaml)")
    p.add_argument("config", help="config file, e.g. configs/quickstart.yaml")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)"
    )
    p.add_argument("--resume", action="store_true", help="continue the run in training.output_dir")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        help="data-parallel processes on this machine (launches torchrun; default 1)",
    )
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="evaluate a trained run on data files at any resolution")
    p.add_argument("run_dir", help="a run directory written by 'opflow train'")
    p.add_argument(
        "--data", nargs="*", default=[], help="data files, any resolution (default: the run's)"
    )
    p.add_argument(
        "--split", default="test", choices=["train", "val", "test"], help="samples (test)"
    )
    p.add_argument("--out", default=None, help="output folder (default RUN_DIR/evaluation)")
    p.add_argument("--climatology", default=None, help="sphere data: climatology file for the ACC")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser(
        "export", help="write a trained run as ONNX or a torch.export program (one grid per file)"
    )
    p.add_argument("run_dir", help="a run directory written by 'opflow train'")
    p.add_argument("-o", "--output", required=True, help="output file (.onnx or .pt2)")
    p.add_argument(
        "--format",
        choices=["onnx", "torch-export"],
        default=None,
        help="default: torch-export for .pt2, else onnx",
    )
    p.add_argument(
        "--grid",
        type=int,
        nargs="+",
        metavar="N",
        help="spatial sizes the file runs at, one per axis (default: the training grid)",
    )
    p.add_argument("--checkpoint", default="best", choices=["best", "last"], help="(best)")
    p.set_defaults(func=_export)

    p = sub.add_parser("quickstart", help="generate NS data, train an FNO, evaluate at 2 grids")
    p.add_argument("--out", default="quickstart", help="folder for data, run and plots")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)"
    )
    p.set_defaults(func=_quickstart)

    p = sub.add_parser("gp-solve", help="solve a PDE with a spectral-mixture GP (GP-HM)")
    p.add_argument("config", help="GP config file, e.g. configs/gp/poisson1d_sin100x.yaml")
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help="override a config value (repeatable)"
    )
    p.set_defaults(func=_gp_solve)

    args = parser.parse_args(argv)
    configure_console(args.quiet)
    try:
        args.func(args)
    except OpflowError as err:
        print(f"opflow: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
