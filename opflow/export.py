"""A trained surrogate as a self-contained graph for codes that do not run Python.

>>> opflow.export_run("runs/quickstart", "ns.onnx")                  # ONNX, training grid
>>> opflow.export_run("runs/quickstart", "ns128.pt2", grid=(128, 128))  # torch.export program

The graph maps physical fields to physical fields, exactly what :class:`opflow.Surrogate`
computes on tensors::

    state (batch, n_in * t_in, *grid)  ->  prediction (batch, n_out * t_out, *grid)

channels variable-major (``u[t-1], u[t], v[t-1], v[t]``), the normaliser inside the graph and a
rollout model's ``t_out`` steps unrolled. Spectral layers run on the ``gemm`` path (truncated
DFTs and Legendre transforms as matrix products), so the graph has no FFT op; opflow's
hand-written autograd nodes and native GELU kernel give way to plain torch ops while the
exporter traces (:func:`opflow.spectral.precision.plain_ops_only`).

**Batch is dynamic; the grid is fixed per file.** The ``gemm`` path's transform matrices and
mode maps are built in Python from the grid's size, so tracing bakes one grid in: export once
per grid (``grid=``), the sidecar names it. Every file is checked before it is written: the
exported program (ONNX Runtime for ONNX) must reproduce the eager model on a batch size other
than the traced one, else nothing is written. Beside ``FILE`` goes ``FILE.json``: variables,
units, channels, grid, time steps, source run and versions.
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.metadata
import importlib.util
import io
import logging
from pathlib import Path

import numpy as np
import torch

import opflow
from opflow.data.io import atomic_write_bytes, atomic_write_json, check_writable
from opflow.errors import ConfigError, ExportError
from opflow.run.spec import PhysicalTaskModel, Task, TaskModel, TrainedModel, load_trained

__all__ = ["EXPORT_TOLERANCE", "FORMATS", "ExportResult", "export_model", "export_run"]

FORMATS = ("onnx", "torch-export")
# the exported program against eager torch, relative to the prediction's RMS: both run the
# same float32 ops, in another order
EXPORT_TOLERANCE = 1e-5
_CHECK_BATCH = 3  # a batch size other than the traced one (2): the batch axis must be free


@dataclasses.dataclass
class ExportResult:
    path: Path
    sidecar: Path
    format: str
    grid: tuple[int, ...]
    max_relative_difference: float  # exported vs eager, max |diff| / RMS of the prediction


def export_run(
    run_dir: str | Path,
    output: str | Path,
    format: str | None = None,
    grid: tuple[int, ...] | None = None,
    checkpoint: str = "best",
) -> ExportResult:
    """Export checkpoint ``checkpoint`` of the run ``run_dir`` to ``output``.

    ``format``: ``onnx`` or ``torch-export`` (default: from the suffix, ``.pt2`` is
    torch-export, anything else ONNX). ``grid``: the spatial sizes the file runs at
    (default: the training grid). Raises :class:`ExportError` if the model cannot be traced
    or the exported program disagrees with torch.
    """
    output = Path(output)
    format = format or ("torch-export" if output.suffix == ".pt2" else "onnx")
    if format not in FORMATS:
        raise ConfigError(
            f"export format {format!r}", f"one of {list(FORMATS)}", "pass --format onnx"
        )
    _check_exporter(format)
    check_writable(output.parent, "the exported model", "pass -o a path in a writable folder")
    trained = load_trained(Path(run_dir), checkpoint, torch.device("cpu"), torch.float32)
    source = {"run": str(Path(run_dir).resolve()), "checkpoint": checkpoint}
    return export_model(trained, output, format, grid, source=source)


def export_model(
    trained: TrainedModel,
    output: str | Path,
    format: str = "onnx",
    grid: tuple[int, ...] | None = None,
    source: dict | None = None,
) -> ExportResult:
    """Export a loaded :class:`~opflow.run.spec.TrainedModel` (see :func:`export_run`)."""
    output = Path(output)
    grid = tuple(int(n) for n in (grid or trained.grid.sizes))
    if len(grid) != len(trained.grid.dims):
        raise ConfigError(
            f"export grid {list(grid)}",
            f"{len(trained.grid.dims)} sizes, one per axis {trained.grid.dims}",
            f"pass --grid with {len(trained.grid.dims)} numbers",
        )
    model = _traceable(trained)
    example = _physical_states(trained, 2, grid, seed=0)
    with torch.no_grad():
        model(example)  # a grid too coarse for the model's modes fails here, in opflow's words
        batch = torch.export.Dim("batch", min=1, max=2**20)
        try:
            blob, run_exported = _EXPORTERS[format](model, example, batch)
        except Exception as err:  # the exporters raise many kinds; the user needs one
            raise ExportError(
                f"{type(trained.model).__name__} could not be exported to {format}: "
                f"{type(err).__name__}: {str(err).splitlines()[0]}",
                "a model of plain torch ops (FNO, LocalNO, MgNO, SFNO export)",
                "report it with the model's config; meanwhile run it through opflow.load",
            ) from err
        check = _physical_states(trained, _CHECK_BATCH, grid, seed=1)
        expected = model(check).numpy()
    got = run_exported(check.numpy())
    scale = float(np.sqrt(np.mean(expected.astype(np.float64) ** 2))) or 1.0
    difference = float(np.max(np.abs(got - expected))) / scale
    if not difference <= EXPORT_TOLERANCE:
        raise ExportError(
            f"the exported {format} program differs from torch by {difference:.2e} of the "
            f"prediction's RMS on a batch of {_CHECK_BATCH}",
            f"at most {EXPORT_TOLERANCE:g}",
            "nothing was written; report it with the model's config",
        )
    atomic_write_bytes(output, blob)
    sidecar = output.with_name(output.name + ".json")
    atomic_write_json(sidecar, _sidecar(trained, output, format, grid, difference, source or {}))
    return ExportResult(output, sidecar, format, grid, difference)


def _traceable(trained: TrainedModel) -> PhysicalTaskModel:
    """A float32 CPU copy of the run's model, every spectral layer on the ``gemm`` path."""
    model = copy.deepcopy(trained.model).float().eval()
    for module in model.modules():
        if isinstance(getattr(module, "backend", None), str):
            module.backend = "gemm"  # matrix products: no FFT op in the graph
    return PhysicalTaskModel(TaskModel(model, trained.task), trained.normalizer).eval()


def _physical_states(trained: TrainedModel, batch: int, grid: tuple[int, ...], seed: int):
    """Random states with each variable's training mean and spread (normalised noise, decoded)."""
    task = trained.task
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(batch, task.in_channels, *grid, generator=generator)
    return trained.normalizer.decode(noise, task.input_variables, task.t_in, task.static_variables)


def _to_onnx(model: torch.nn.Module, example: torch.Tensor, batch):
    import onnxruntime

    # the exporter's chatter (progress lines, "torchvision is not installed") is not the user's
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    program = torch.onnx.export(
        model,
        (example,),
        input_names=["state"],
        output_names=["prediction"],
        dynamic_shapes=({0: batch},),
        dynamo=True,
        verbose=False,
    )
    blob = program.model_proto.SerializeToString()
    session = onnxruntime.InferenceSession(blob, providers=["CPUExecutionProvider"])
    return blob, lambda x: session.run(None, {"state": x})[0]


def _to_torch_export(model: torch.nn.Module, example: torch.Tensor, batch):
    program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    blob = buffer.getvalue()
    reloaded = torch.export.load(io.BytesIO(blob)).module()  # check the file, not the object

    def run(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return reloaded(torch.from_numpy(x)).numpy()

    return blob, run


_EXPORTERS = {"onnx": _to_onnx, "torch-export": _to_torch_export}


def _check_exporter(format: str) -> None:
    needed = ("onnx", "onnxscript", "onnxruntime") if format == "onnx" else ()
    missing = [name for name in needed if importlib.util.find_spec(name) is None]
    if missing:
        raise ExportError(
            f"ONNX export needs {', '.join(missing)}, which is not installed",
            "the packages of opflow's 'export' extra",
            "pip install 'opflow[export]' (or --format torch-export, which needs only torch)",
        )


def _channels(variables: list[str], offsets: range) -> list[str]:
    """Channel names, variable-major: ``u[t-1], u[t], v[t-1], v[t]``."""
    return [f"{v}[t{k:+d}]" if k else f"{v}[t]" for v in variables for k in offsets]


def _sidecar(
    trained: TrainedModel,
    output: Path,
    format: str,
    grid: tuple[int, ...],
    difference: float,
    source: dict,
) -> dict:
    task: Task = trained.task
    meta = trained.meta
    n_out = len(task.output_variables)
    versions = {"opflow": opflow.__version__, "torch": torch.__version__}
    if format == "onnx":
        versions |= {name: importlib.metadata.version(name) for name in ("onnx", "onnxruntime")}
    time_step = meta.get("time_step", meta.get("time_step_ns"))
    return {
        "format": format,
        "file": output.name,
        "input": {
            "name": "state" if format == "onnx" else "x",
            "shape": ["batch", task.in_channels, *grid],
            "dtype": "float32",
            "channels": _channels(task.input_variables, range(1 - task.t_in, 1))
            + list(task.static_variables),
        },
        "output": {
            "name": "prediction",
            "shape": ["batch", n_out * task.t_out, *grid],
            "dtype": "float32",
            "channels": _channels(task.output_variables, range(1, task.t_out + 1)),
        },
        "variables": {
            "input": task.input_variables,
            "static": task.static_variables,
            "output": task.output_variables,
        },
        "units": {
            v: meta.get("units", {}).get(v)
            for v in dict.fromkeys(
                task.input_variables + task.output_variables + task.static_variables
            )
        },
        "t_in": task.t_in,
        "t_out": task.t_out,
        "rollout": task.rollout,
        "time_step": time_step,
        "time_step_unit": "ns" if "time_step_ns" in meta else "the data's time coordinate",
        "grid": {"dims": trained.grid.dims, "sizes": list(grid)},
        "training_grid": trained.grid.to_json(),
        "model": meta["config"]["model"]["name"],
        "source": {**source, "epoch": meta.get("epoch")},
        "versions": versions,
        "check": {"max_relative_difference": difference, "batch": _CHECK_BATCH},
    }
