"""Evaluate a trained run on data files at any resolution (zero-shot super-resolution).

``opflow evaluate RUN_DIR --data ns_64.nc ns_128.nc`` runs the run's best checkpoint on the test
split of each file (the training config's split, so every resolution sees the same samples),
prints relative L2 errors per resolution, writes the predictions as xarray files and plots
prediction / truth / error and the error spectra. On the sphere (spatial dims ``lat``/``lon`` or
``latitude``/``longitude``) it also reports WeatherBench 2's latitude-weighted RMSE, and the
anomaly correlation when a climatology file is given, per variable and lead step, and draws the
fields as longitude–latitude maps.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from opflow.data.dataset import DataConfig, FieldData
from opflow.data.io import atomic_write_json, check_writable, write_dataset
from opflow.errors import ConfigError
from opflow.evaluate.forecast import forecast_scores, forecast_table
from opflow.evaluate.metrics import spectral_error
from opflow.evaluate.plots import plot_error_spectra, plot_fields, quantity_label
from opflow.evaluate.super_resolution import Bands, super_resolution, super_resolution_lines
from opflow.models.protocols import Staged, kept_modes
from opflow.norms import per_variable, relative_h1_per_sample, relative_lp_per_sample
from opflow.run.execution import resolve_device
from opflow.run.spec import load_trained
from opflow.schema import from_dict, load_yaml
from opflow.surrogate import Surrogate

__all__ = ["ResolutionResult", "evaluate_run", "format_table"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class ResolutionResult:
    data: str
    grid: list[int]
    n_pairs: int
    rel_l2: float
    rel_l2_std: float
    rel_h1: float
    predictions: str
    fields_plot: str
    # on the sphere: {variable: {"rmse": [per lead step], "acc": [...] (with a climatology)}}
    weather_scores: dict | None = None
    # grids finer than the training grid: the error in and above the training band,
    # beside the baseline "predict on the training grid, interpolate" (super_resolution.py)
    super_resolution: dict | None = None


def evaluate_run(
    run_dir: str | Path,
    data_paths: list[str | Path],
    split: str = "test",
    out_dir: str | Path | None = None,
    checkpoint: str = "best",
    batch_size: int = 16,
    surrogate: Surrogate | None = None,
    climatology: str | Path | None = None,
    device: str | torch.device | None = "cpu",
) -> list[ResolutionResult]:
    """Evaluate ``run_dir`` on each of ``data_paths`` (none: the run's training data file);
    writes results under ``out_dir``.

    ``surrogate``: evaluate this one instead of the checkpoint's (e.g. the run's model with an
    evaluation option changed); the run still provides the data configuration.
    ``climatology``: a file holding the output variables on each data file's ``lat``/``lon``
    grid (interpolated to it otherwise), for the anomaly correlation on spherical data.
    ``device``: where the model runs (``cpu``, ``cuda``, ``cuda:N`` or ``auto``).
    """
    run_dir = Path(run_dir)
    out_dir = Path(out_dir) if out_dir else run_dir / "evaluation"
    trained = load_trained(run_dir, checkpoint, resolve_device(device))
    if surrogate is None:
        surrogate = Surrogate(trained.model, trained.normalizer, trained.task, trained.grid)
    check_writable(out_dir, "evaluation", "pass --out with a writable directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    _warn_if_config_edited(run_dir, trained.meta["config"])
    base = from_dict(DataConfig, trained.meta["config"]["data"], where="data")
    data_paths = list(data_paths) or base.paths  # by default the data it was trained on
    task = surrogate.task

    results, spectra = [], {}
    for path in data_paths:
        data = FieldData(dataclasses.replace(base, path=str(path)))
        if modes := kept_modes(surrogate.model):
            data.check_resolution(modes)
        dataset = data.dataset(split)
        pred, truth, last = _predict(surrogate, dataset, batch_size)
        n_vars = len(task.output_variables)
        errors = per_variable(relative_lp_per_sample, n_vars)(pred, truth)
        label = "x".join(str(n) for n in data.grid.sizes)
        stem = f"{Path(path).stem}"
        pred_path = write_dataset(
            _predictions_dataset(pred, truth, data, dataset, task),
            out_dir / f"predictions_{stem}.nc",
        )
        fields_path = _plot_fields(pred, truth, errors, data, task, out_dir, stem, label)
        sphere = _is_sphere(data)
        scores = forecast_scores(pred, truth, last, data, task, climatology) if sphere else None
        finer = _finer(data.grid.sizes, trained.grid.sizes)
        beyond = None
        if finer:
            space = "periodic" if base.periodic else "closed"
            if sphere:
                space = data.ds.attrs.get("sphere_grid", "equiangular")
            beyond = super_resolution(
                surrogate, dataset, batch_size, pred, truth, trained.grid, Bands(space)
            )
        if len(data.grid.sizes) == 2:
            spectra[label] = spectral_error(pred, truth)
            for stage, partial in _stage_predictions(surrogate, dataset, batch_size):
                spectra[f"{label}, stages 1-{stage}"] = spectral_error(partial, truth)
        results.append(
            ResolutionResult(
                data=str(path),
                grid=list(data.grid.sizes),
                n_pairs=len(dataset),
                rel_l2=errors.mean().item(),
                rel_l2_std=errors.std().item() if len(errors) > 1 else 0.0,
                rel_h1=per_variable(
                    lambda p, t: relative_h1_per_sample(p, t, base.periodic), n_vars
                )(pred, truth)
                .mean()
                .item(),
                predictions=str(pred_path),
                fields_plot=str(fields_path),
                weather_scores=scores,
                super_resolution=beyond,
            )
        )
    if spectra:
        plot_error_spectra(spectra, out_dir / "error_spectrum.png")
    atomic_write_json(out_dir / "results.json", [dataclasses.asdict(r) for r in results])
    return results


def _plot_fields(pred, truth, errors, data: FieldData, task, out_dir: Path, stem: str, label: str):
    """One figure per output variable: its last lead step for the test pair of median error
    and for the worst one. Returns the first figure's path."""
    order = torch.argsort(errors)
    picks = [("median", int(order[len(order) // 2]))]
    if len(order) > 1:
        picks.append(("worst", int(order[-1])))
    n_vars = len(task.output_variables)
    n_steps = pred.shape[1] // n_vars
    lead = "one step" if n_steps == 1 else f"step {n_steps} of {n_steps}"
    sphere = _is_sphere(data)
    paths = []
    for i, var in enumerate(task.output_variables):
        channel = (i + 1) * n_steps - 1  # this variable's last lead step
        name = f"fields_{stem}.png" if n_vars == 1 else f"fields_{stem}_{var}.png"
        rows = [
            (f"{kind} error (pair {k}, rel. L2 {errors[k].item():.3g})",
             pred[k, channel].numpy(), truth[k, channel].numpy())
            for kind, k in picks
        ]  # fmt: skip
        quantity = quantity_label(dict(data.ds[var].attrs), var)
        paths.append(
            plot_fields(
                rows,
                out_dir / name,
                f"{quantity} at {label}, lead {lead} ahead (test split, {len(order)} pairs)",
                quantity,
                _extent(data),
                ("longitude (deg E)", "latitude (deg N)") if sphere else ("x", "y"),
            )
        )
    return paths[0]


def _warn_if_config_edited(run_dir: Path, trained_with: dict) -> None:
    """The checkpoint's config is what the weights were trained with; say so when the run's
    config.yaml no longer matches it (edited after training) instead of silently ignoring it."""
    path = run_dir / "config.yaml"
    if not path.is_file():
        return
    try:
        on_disk = load_yaml(path)
    except ConfigError:
        on_disk = None
    if on_disk != trained_with:
        changed = sorted(
            k
            for k in set(trained_with) | set(on_disk or {})
            if (on_disk or {}).get(k) != trained_with.get(k)
        )
        log.warning(
            "%s differs from the configuration the checkpoint was trained with (sections %s): "
            "evaluating with the checkpoint's; train a new run to use the edited one",
            path,
            ", ".join(changed) or "all",
        )


def _predict(
    surrogate, dataset, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Predictions and truths of a whole split, batch by batch, and the inputs' last state
    ``(N, n_inputs, *s)`` (persistence, the forecast baseline)."""
    task = surrogate.task
    preds, truths, lasts = [], [], []
    with torch.no_grad():
        for indices in torch.arange(len(dataset)).split(batch_size):
            x, y = dataset.batch(indices)
            truths.append(y)
            history = x[:, : task.history_channels]
            lasts.append(history.unflatten(1, (len(task.input_variables), task.t_in))[:, :, -1])
            preds.append(surrogate.predict(x).to("cpu", y.dtype))
    return torch.cat(preds), torch.cat(truths), torch.cat(lasts)


def _finer(grid: list[int], training: list[int]) -> bool:
    return all(n >= m for n, m in zip(grid, training)) and list(grid) != list(training)


def _stage_predictions(surrogate, dataset, batch_size: int):
    """For a staged model (SpecBoost): ``(k, prediction of stages 1..k)`` for each earlier
    ``k``, so the error spectrum shows what every stage removes."""
    model = surrogate.model
    active = model.active_stages if isinstance(model, Staged) else 1
    try:
        for stage in range(1, active):
            model.active_stages = stage
            yield stage, _predict(surrogate, dataset, batch_size)[0]
    finally:
        if active > 1:
            model.active_stages = active


def _is_sphere(data: FieldData) -> bool:
    dims = data.grid.dims
    return len(dims) == 2 and dims[0] in ("lat", "latitude") and dims[1] in ("lon", "longitude")


def _extent(data: FieldData):
    if len(data.grid.sizes) != 2:
        return None
    (y0, x0), (hy, hx) = data.grid.start, data.grid.spacing
    ny, nx = data.grid.sizes
    return (x0, x0 + nx * hx, y0, y0 + ny * hy)


def _predictions_dataset(pred, truth, data: FieldData, dataset, task) -> xr.Dataset:
    n_steps = pred.shape[1] // len(task.output_variables)
    coords = data.coords()
    spatial = data.grid.dims
    sample = np.repeat(dataset.indices, len(dataset.starts))
    start = np.tile(np.asarray(dataset.starts), len(dataset.indices))
    data_vars = {}
    for i, var in enumerate(task.output_variables):
        block = slice(i * n_steps, (i + 1) * n_steps)
        dims = ("pair", "step", *spatial)
        attrs = dict(data.ds[var].attrs)
        data_vars[var] = (dims, pred[:, block].numpy(), attrs | {"comment": "surrogate prediction"})
        data_vars[f"{var}_truth"] = (dims, truth[:, block].numpy(), attrs)
    return xr.Dataset(
        data_vars,
        coords={
            **{d: coords[d] for d in spatial},
            "step": np.arange(1, n_steps + 1),
            "sample": ("pair", sample),
            "window_start": ("pair", start),
        },
        attrs={"source": "opflow evaluate", "data": str(data.path)},
    )


def format_table(results: list[ResolutionResult], train_grid: list[int] | None = None) -> str:
    """A plain-text table of errors per resolution."""
    lines = [
        f"{'data':<40} {'grid':>9} {'pairs':>6} {'rel. L2':>9} {'± std':>8} {'rel. H1':>9}",
        "-" * 86,
    ]
    for r in results:
        grid = "x".join(map(str, r.grid))
        mark = " (train)" if train_grid and r.grid == train_grid else ""
        lines.append(
            f"{Path(r.data).name:<40} {grid:>9} {r.n_pairs:>6} {r.rel_l2:>9.4f} "
            f"{r.rel_l2_std:>8.4f} {r.rel_h1:>9.4f}{mark}"
        )
    for r in results:
        if r.super_resolution:
            lines += super_resolution_lines(r.super_resolution, r.grid)
    for r in results:
        if r.weather_scores:
            lines += forecast_table(r.weather_scores, r.grid)
    return "\n".join(lines)
