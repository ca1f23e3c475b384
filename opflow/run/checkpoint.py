"""Checkpoints: safetensors tensors + JSON metadata, written so a crash never corrupts one.

Layout of ``RUN_DIR/checkpoints/``::

    epoch_0007.safetensors   model.*, optim.* and rng.* tensors; metadata["opflow"] is JSON
    last.json, best.json     pointers {"file", "sha256", "epoch"}, each replaced atomically

A checkpoint file is written (temp file + fsync + rename) before the pointer that names it, so
a process killed at any instant leaves the previous pointer valid. Loading checks the SHA-256
recorded in the pointer, so a truncated or corrupt file is reported as such. No pickle.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import safetensors.torch
import torch

import opflow
from opflow.data.io import atomic_write_bytes, atomic_write_json, check_writable
from opflow.errors import CheckpointError, ConfigError

__all__ = [
    "save_checkpoint",
    "load_checkpoint",
    "has_checkpoint",
    "check_run_dir",
    "optimizer_tensors",
]


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    """Split an optimizer's state into flat tensors and JSON-able param groups."""
    state = optimizer.state_dict()
    tensors = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"optim.{index}.{key}"] = tensor.detach().cpu().contiguous()
    return tensors, state["param_groups"]


def _restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict, groups: list) -> None:
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(
    run_dir: Path,
    tags: list[str],
    epoch: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    meta: dict,
) -> Path:
    """Write epoch ``epoch``'s checkpoint and point each of ``tags`` (e.g. last, best) at it."""
    folder = Path(run_dir) / "checkpoints"
    model_tensors, tied = _model_tensors(model)
    tensors = {f"model.{k}": v for k, v in model_tensors.items()}
    # what wrote it: a checkpoint that misbehaves later can be matched to its software
    versions = {"opflow": opflow.__version__, "torch": torch.__version__}
    meta = dict(meta, epoch=epoch, tied=tied, versions=versions)
    if optimizer is not None:
        optim, groups = optimizer_tensors(optimizer)
        tensors.update(optim)
        meta["optimizer_param_groups"] = groups
    tensors["rng.torch"] = torch.get_rng_state()
    if torch.cuda.is_initialized():  # pragma: no cover - GPU: dropout masks drawn there
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    blob = safetensors.torch.save(tensors, metadata={"opflow": json.dumps(meta)})
    path = folder / f"epoch_{epoch:04d}.safetensors"
    atomic_write_bytes(path, blob)
    digest = hashlib.sha256(blob).hexdigest()
    for tag in tags:
        atomic_write_json(
            folder / f"{tag}.json", {"file": path.name, "sha256": digest, "epoch": epoch}
        )
    _remove_unreferenced(folder)
    return path


def _model_tensors(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The model's state tensors, each stored once: ``(tensors, tied)``.

    Tensors only: non-tensor "extra state" (e.g. a wrapped model's constructor metadata) is
    rebuilt from the config, never serialised. A tensor that appears under several names (tied
    weights, e.g. neuraloperator's LocalNO registers each differential kernel's weight twice)
    is stored under its first name and ``tied`` maps every other name to it; safetensors
    refuses tensors that share memory.
    """
    tensors: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    first_name: dict[tuple, str] = {}
    storages: set[int] = set()
    for name, value in model.state_dict().items():
        if not torch.is_tensor(value):
            continue
        value = value.detach()
        storage = value.untyped_storage().data_ptr()
        view = (storage, value.storage_offset(), tuple(value.shape), value.stride(), value.dtype)
        if view in first_name:
            tied[name] = first_name[view]
            continue
        first_name[view] = name
        # another view into a storage already stored (not the same tensor): an own copy
        value = value.clone() if storage in storages else value
        storages.add(storage)
        tensors[name] = value.cpu().contiguous()
    return tensors, tied


def _remove_unreferenced(folder: Path) -> None:
    referenced = set()
    for pointer in folder.glob("*.json"):
        try:
            referenced.add(json.loads(pointer.read_text())["file"])
        except (OSError, ValueError, KeyError):
            return  # never delete while a pointer is unreadable
    for path in folder.glob("epoch_*.safetensors"):
        if path.name not in referenced:
            path.unlink(missing_ok=True)


def has_checkpoint(run_dir: Path, tag: str = "last") -> bool:
    return (Path(run_dir) / "checkpoints" / f"{tag}.json").is_file()


def load_checkpoint(run_dir: Path, tag: str = "best") -> tuple[dict, dict]:
    """``(tensors, meta)`` of checkpoint ``tag``, verified against its recorded SHA-256."""
    folder = Path(run_dir) / "checkpoints"
    pointer = folder / f"{tag}.json"
    if not pointer.is_file():
        raise CheckpointError(
            f"No {tag!r} checkpoint in {run_dir}",
            f"{pointer} written by 'opflow train'",
            "check the run directory, or train (or resume) the run first",
        )
    try:
        info = json.loads(pointer.read_text())
        path, digest = folder / info["file"], info["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(
            f"Checkpoint pointer {pointer} is corrupt ({err})",
            "a JSON object with file and sha256",
            "delete the run's checkpoints and retrain, or restore a backup",
        ) from None
    if not path.is_file():
        raise CheckpointError(
            f"Checkpoint file {path} named by {pointer.name} is missing",
            "the file the pointer names",
            "restore the file or retrain",
        )
    blob = path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != digest:
        raise CheckpointError(
            f"Checkpoint {path} is truncated or corrupt ({len(blob)} bytes; checksum mismatch)",
            "the file exactly as it was written",
            "restore it from a backup, or resume from another checkpoint/retrain",
        )
    try:
        tensors = safetensors.torch.load(blob)
        with safetensors.safe_open(path, framework="pt") as f:
            meta = json.loads(f.metadata()["opflow"])
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(
            f"Checkpoint {path} cannot be read: {err}",
            "a safetensors file written by opflow",
            "retrain the run",
        ) from None
    return tensors, meta


def restore(
    tensors: dict,
    meta: dict,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    rng: bool = False,
) -> None:
    """Load model (and optionally optimizer and torch RNG) state from a checkpoint."""
    saved = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    for name, stored_as in meta.get("tied", {}).items():
        if stored_as in saved:
            saved.setdefault(name, saved[stored_as])
    state = model.state_dict()
    expected = {k for k, v in state.items() if torch.is_tensor(v)}
    missing, unexpected = sorted(expected - saved.keys()), sorted(saved.keys() - expected)
    try:
        if missing or unexpected:
            raise RuntimeError(f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        # every tensor is checked above; non-tensor extra state stays as the config built it
        model.load_state_dict(saved, strict=False)
    except RuntimeError as err:
        raise CheckpointError(
            f"Checkpoint weights do not fit the model: {err}",
            "a checkpoint of this model configuration",
            "load it with the config it was trained with",
        ) from None
    if optimizer is not None:
        _restore_optimizer(optimizer, tensors, meta["optimizer_param_groups"])
    if rng:
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():  # pragma: no cover - GPU
            torch.cuda.set_rng_state(tensors["rng.cuda"])


def check_run_dir(run_dir: Path, resume: bool, is_main: bool) -> None:
    """Before any work: the output directory fits ``resume`` and can be written."""
    if not resume and has_checkpoint(run_dir):
        raise ConfigError(
            f"{run_dir} already holds a trained run",
            "a new output directory, or --resume to continue this run",
            "pass --resume, or --set training.output_dir=OTHER",
        )
    if resume and not has_checkpoint(run_dir):
        raise ConfigError(  # a mistyped output_dir must not silently start a new run
            f"Nothing to resume: {run_dir} holds no checkpoint",
            "the output directory of an earlier run",
            "check training.output_dir, or drop --resume to start a new run",
        )
    if is_main:  # a run that cannot write its checkpoints stops now, not after an epoch
        check_writable(run_dir, "run", "--set training.output_dir=A_WRITABLE_DIRECTORY")
