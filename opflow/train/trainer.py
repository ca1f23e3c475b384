"""Training from a config: ``opflow train CONFIG.yaml [--set key=value ...] [--resume]``.

Deterministic and resumable: the model is initialised from ``training.seed``, each epoch's
sample order comes from a generator seeded by ``(seed, epoch)``, the learning rate is a pure
function of the step, and a checkpoint holds weights, optimizer state and the torch RNG. So a
run resumed from its last checkpoint (after a crash or a SIGKILL) ends with the same weights as
an uninterrupted run.

Run directory::

    config.yaml         the resolved config
    metrics.jsonl       one JSON object per epoch (train loss, validation error, lr, time)
    checkpoints/        see :mod:`opflow.train.checkpoint` (last.json, best.json)
    tensorboard/        when training.tensorboard is true
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch
import yaml
from tqdm.auto import tqdm

from opflow.data.dataset import DataConfig, FieldData, Grid, check_time_steps
from opflow.data.io import atomic_write_bytes
from opflow.data.normalizer import Normalizer
from opflow.errors import ConfigError
from opflow.models import build_model
from opflow.schema import to_dict
from opflow.surrogate import Surrogate, Task
from opflow.train import checkpoint
from opflow.train.config import Config, config_from_dict
from opflow.train.losses import make_loss, per_variable, relative_lp

__all__ = ["train", "surrogate_from_checkpoint", "learning_rate"]


def learning_rate(config: Config, step: int, total_steps: int, steps_per_epoch: int) -> float:
    """The learning rate at optimizer step ``step`` (0-based) of ``total_steps``."""
    base, sched = config.optimizer.lr, config.scheduler
    progress = step / max(1, total_steps)
    if sched.name == "constant":
        return base
    if sched.name == "step":
        return base * sched.gamma ** ((step // steps_per_epoch) // sched.step_epochs)
    floor = base * sched.min_lr_ratio
    if sched.name == "onecycle":
        warm = sched.warmup_fraction
        if progress < warm:
            return base * (0.04 + 0.96 * progress / warm)
        progress = (progress - warm) / max(1e-12, 1 - warm)
    return floor + (base - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def _task(data: DataConfig, rollout: bool) -> Task:
    return Task(
        input_variables=list(data.input_variables),
        output_variables=list(data.outputs),
        t_in=data.t_in,
        t_out=data.t_out,
        rollout=rollout,
        sample_dim=data.sample_dim,
        time_dim=data.time_dim,
    )


def _build_model(config: Config, task: Task) -> torch.nn.Module:
    args = dict(config.model.args)
    for key, value in (
        ("in_channels", task.in_channels),
        ("out_channels", task.model_out_channels),
    ):
        if args.setdefault(key, value) != value:
            raise ConfigError(
                f"model.args.{key}={args[key]} does not match the data ({value})",
                f"{key} = {value} for these variables and time windows",
                f"remove model.args.{key} to have it set from the data",
            )
    return build_model(config.model.name, **args)


def _optimizer(config: Config, model: torch.nn.Module, stage: int = 0) -> torch.optim.Optimizer:
    """Adam(W) over the parameters that train now (a staged model freezes the others).

    Later stages of a staged model always decay their weights decoupled (AdamW): a stage that
    learns a residual starts from gradients ~100x smaller than a first stage's (the easy part
    of the target is gone), below Adam's coupled ``weight_decay * w``, and the coupled decay
    then shrinks every weight by ~lr per step until the stage outputs zero (measured on NS
    1e-4: inner weights 0.115 -> 0.036 in one epoch, stage 2 never learned).
    """
    decoupled = config.optimizer.name == "adamw" or stage > 0
    optim_cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    params = [p for p in model.parameters() if p.requires_grad]
    return optim_cls(params, lr=config.optimizer.lr, weight_decay=config.optimizer.weight_decay)


def _begin_stage(surrogate: Surrogate, stage: int, train_set, batch_size: int) -> None:
    """Scale stage ``stage`` of a staged model by the RMS of its predecessors' normalised
    residual on the training split (the residual normalisation of SpecBoost)."""
    model, task, normalizer = surrogate.model, surrogate.task, surrogate.normalizer
    active, model.active_stages = model.active_stages, stage
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for indices in torch.arange(len(train_set)).split(batch_size):
            x, y = train_set.batch(indices)
            z = normalizer.encode(x, task.input_variables, task.t_in)
            target = normalizer.encode(y, task.output_variables, task.t_out)
            residual = surrogate.forward_normalized(z) - target
            total += residual.square().sum().item()
            count += residual.numel()
    model.active_stages = active
    scale = math.sqrt(total / max(count, 1))
    model.set_residual_scale(stage, scale)
    print(f"stage {stage + 1}: learns a residual of RMS {scale:.4g} (normalised units)", flush=True)


def _residual_loss(surrogate: Surrogate, loss_fn, z, pred, y) -> torch.Tensor:
    """The loss of a later stage on the residual it learns: ``loss(pred - prev, y - prev)``
    with ``prev`` the frozen earlier stages' prediction (SpecBoost's per-stage target).

    For relative losses this divides by the residual's norm instead of the target's: on the
    total's relative error a stage that corrects a 9% residual sees gradients ~10x smaller
    than its first stage did, Adam's coupled weight decay outweighs them, and the stage decays
    to a zero output without learning (measured on NS 1e-4: stage 2's output RMS 0.003, its
    correlation with the residual 0.03).
    """
    model, task = surrogate.model, surrogate.task
    active = model.active_stages
    with torch.no_grad():
        model.active_stages = active - 1
        prev = surrogate.normalizer.decode(
            surrogate.forward_normalized(z), task.output_variables, task.t_out
        )
        model.active_stages = active
    return loss_fn(pred - prev, y - prev)


def _batches(n: int, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(n, generator=generator)
    return list(order.split(batch_size))


def evaluate_split(surrogate: Surrogate, dataset, batch_size: int) -> float:
    """Mean relative L2 error (physical units) over a dataset, averaged over variables."""
    metric = per_variable(relative_lp, len(surrogate.task.output_variables))
    total, count = 0.0, 0
    with torch.no_grad():
        for indices in torch.arange(len(dataset)).split(batch_size):
            x, y = dataset.batch(indices)
            pred = surrogate.predict(x)
            total += metric(pred, y).item() * len(indices)
            count += len(indices)
    return total / max(1, count)


def _meta(config: Config, normalizer: Normalizer, grid: Grid, task: Task, **extra) -> dict:
    return {
        "config": to_dict(config),
        "normalizer": normalizer.to_json(),
        "grid": grid.to_json(),
        "task": dataclasses.asdict(task),
        **extra,
    }


def _read_metrics(path: Path, up_to_epoch: int) -> list[dict]:
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if row.get("epoch", math.inf) <= up_to_epoch:
            rows.append(row)
    return rows


def train(config: Config, resume: bool = False, progress: bool | None = None) -> Path:
    """Train the model of ``config``; returns the run directory."""
    run_dir = Path(config.training.output_dir)
    tcfg = config.training
    if tcfg.threads:
        torch.set_num_threads(tcfg.threads)
    if not resume and checkpoint.has_checkpoint(run_dir):
        raise ConfigError(
            f"{run_dir} already holds a trained run",
            "a new output directory, or --resume to continue this run",
            "pass --resume, or --set training.output_dir=OTHER",
        )
    if resume and not checkpoint.has_checkpoint(run_dir):
        resume = False  # nothing to resume from: start from scratch

    check_time_steps(config.data, tcfg.rollout)
    data = FieldData(config.data)
    task = _task(config.data, tcfg.rollout)
    torch.manual_seed(tcfg.seed)
    model = _build_model(config, task)
    if hasattr(model, "n_modes"):
        data.check_resolution(tuple(model.n_modes))
    train_set, val_set = data.dataset("train"), data.dataset("val")
    if len(train_set) == 0:
        raise ConfigError(
            "The training split is empty", "at least one sample", "raise data.split.train"
        )
    variables = list(dict.fromkeys(task.input_variables + task.output_variables))
    normalizer = Normalizer.fit(data, data.split_indices("train"), variables)
    # staged models (SpecBoost) train one stage after another, each with its own optimizer
    # and learning-rate schedule over an equal share of the epochs
    n_stages = getattr(model, "n_stages", 1)
    if tcfg.epochs % n_stages:
        raise ConfigError(
            f"training.epochs={tcfg.epochs} for a model of {n_stages} stages",
            f"a multiple of {n_stages} (the epochs are split evenly between the stages)",
            f"use training.epochs={n_stages * max(1, round(tcfg.epochs / n_stages))}",
        )
    stage_epochs = tcfg.epochs // n_stages
    loss_fn = per_variable(
        make_loss(config.loss.kind, config.loss.p, config.data.periodic),
        len(task.output_variables),
    )
    surrogate = Surrogate(model, normalizer, task, data.grid)

    start_epoch, best = 0, math.inf
    tensors = meta = None
    if resume:
        tensors, meta = checkpoint.load_checkpoint(run_dir, "last")
        start_epoch, best = meta["epoch"] + 1, meta.get("best_val", math.inf)
    stage = min(start_epoch // stage_epochs, n_stages - 1)
    if n_stages > 1:
        model.set_stage(stage)
    optimizer = _optimizer(config, model, stage)
    if resume:
        same_stage = n_stages == 1 or meta["epoch"] // stage_epochs == stage
        # a checkpoint from the end of the previous stage holds that stage's optimizer
        checkpoint.restore(tensors, meta, model, optimizer if same_stage else None, rng=True)
        normalizer = Normalizer.from_json(meta["normalizer"])
        surrogate.normalizer = normalizer
    if n_stages > 1 and stage > 0 and start_epoch == stage * stage_epochs:
        _begin_stage(surrogate, stage, train_set, tcfg.batch_size)  # resumed at a stage start
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(run_dir / "config.yaml", yaml.safe_dump(to_dict(config)).encode())
    metrics_path = run_dir / "metrics.jsonl"
    rows = _read_metrics(metrics_path, start_epoch - 1)
    atomic_write_bytes(metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    writer = _tensorboard(run_dir) if tcfg.tensorboard else None

    steps_per_epoch = math.ceil(len(train_set) / tcfg.batch_size)
    total_steps = steps_per_epoch * stage_epochs
    for epoch in range(start_epoch, tcfg.epochs):
        started = time.perf_counter()
        if n_stages > 1 and epoch // stage_epochs != stage:
            stage = epoch // stage_epochs
            model.set_stage(stage)
            _begin_stage(surrogate, stage, train_set, tcfg.batch_size)
            optimizer = _optimizer(config, model, stage)
            print(f"stage {stage + 1}/{n_stages}", flush=True)
        stage_step = (epoch - stage * stage_epochs) * steps_per_epoch
        model.train()
        batches = _batches(len(train_set), tcfg.batch_size, tcfg.seed, epoch)
        running = 0.0
        bar = tqdm(
            batches, desc=f"epoch {epoch + 1}/{tcfg.epochs}", leave=False, disable=progress is False
        )
        for i, indices in enumerate(bar):
            lr = learning_rate(config, stage_step + i, total_steps, steps_per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = train_set.batch(indices)
            z = normalizer.encode(x, task.input_variables, task.t_in)
            pred = normalizer.decode(
                surrogate.forward_normalized(z), task.output_variables, task.t_out
            )
            loss = loss_fn(pred, y)
            objective = loss if stage == 0 else _residual_loss(surrogate, loss_fn, z, pred, y)
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            running += loss.item()
            bar.set_postfix(loss=f"{running / (i + 1):.4f}")
        model.eval()
        val = evaluate_split(surrogate, val_set, tcfg.batch_size) if len(val_set) else math.nan
        row = {
            "epoch": epoch,
            "train_loss": running / len(batches),
            "val_rel_l2": val,
            "lr": lr,
            "seconds": round(time.perf_counter() - started, 3),
        }
        with open(metrics_path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if writer is not None:
            for key in ("train_loss", "val_rel_l2", "lr"):
                writer.add_scalar(key, row[key], epoch)
        print(
            f"epoch {epoch + 1}/{tcfg.epochs}  train {row['train_loss']:.4f}  "
            f"val rel L2 {val:.4f}  ({row['seconds']:.1f}s)",
            flush=True,
        )
        if math.isfinite(val):
            improved, best = val < best, min(best, val)
        else:  # no validation split: the latest weights are the best we know
            improved = True
        last_epoch = epoch == tcfg.epochs - 1
        if improved or last_epoch or (epoch + 1) % tcfg.checkpoint_every == 0:
            tags = ["last"] + (["best"] if improved else [])
            meta = _meta(config, normalizer, data.grid, task, best_val=best, val_rel_l2=val)
            if n_stages > 1:  # a "best" checkpoint from an early stage runs only its stages
                meta["active_stages"] = model.active_stages
            checkpoint.save_checkpoint(run_dir, tags, epoch, model, optimizer, meta)
    if writer is not None:
        writer.close()
    return run_dir


def _tensorboard(run_dir: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError(
            "training.tensorboard is true but TensorBoard is not installed",
            "the tensorboard package",
            "pip install tensorboard, or set training.tensorboard: false",
        ) from None
    return SummaryWriter(run_dir / "tensorboard")


def surrogate_from_checkpoint(run_dir: Path, tag: str = "best") -> Surrogate:
    """Rebuild model, normaliser, task and grid from a run's checkpoint."""
    tensors, meta = checkpoint.load_checkpoint(run_dir, tag)
    config = config_from_dict(meta["config"])
    task = Task(**meta["task"])
    model = _build_model(config, task)
    checkpoint.restore(tensors, meta, model)
    if "active_stages" in meta:
        model.active_stages = meta["active_stages"]
    return Surrogate(model, Normalizer.from_json(meta["normalizer"]), task, Grid(**meta["grid"]))
