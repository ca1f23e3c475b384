"""Training from a config: ``opflow train CONFIG.yaml [--set key=value ...] [--resume]``.

Deterministic and resumable: the model is initialised from ``training.seed``, each epoch's
sample order comes from a generator seeded by ``(seed, epoch)``, the learning rate is a pure
function of the step, and a checkpoint holds weights, optimizer state and the torch RNG. So a
run resumed from its last checkpoint (after a crash or a SIGKILL) ends with the same weights as
an uninterrupted run.

Domain parallel (``training.spatial_parallel: P``): ``P`` ranks share each field, holding some
rows each (:func:`opflow.train.context.shard_fields`), as one data-parallel replica below.

Data parallel: under ``torchrun`` every process takes a contiguous share of each global batch
(:meth:`opflow.run.distributed.ProcessGroup.shard`), weights its mean loss by that share, and
``DistributedDataParallel`` averages the gradients, so N processes reach the weights of one
process with the same ``batch_size``, up to float rounding. Only rank 0 writes files; a
checkpoint does not depend on the number of processes, so a run can resume with another.

Run directory::

    config.yaml         the resolved config
    metrics.jsonl       one JSON object per epoch (train loss, validation error, lr, time)
    train.log           the run's messages (epochs, stages), appended across resumes
    checkpoints/        see :mod:`opflow.run.checkpoint` (last.json, best.json)
    tensorboard/ ...    a tracker's files (training.tracker), e.g. TensorBoard's
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Literal

import torch
import yaml
from tqdm.auto import tqdm

from opflow.data.dataset import DataConfig, FieldData, check_time_steps
from opflow.data.grid import Grid
from opflow.data.io import atomic_write_bytes
from opflow.data.normalizer import Normalizer
from opflow.data.windows import MultiGridDataset
from opflow.errors import ConfigError
from opflow.models.protocols import kept_modes, stage_count
from opflow.norms import per_variable
from opflow.run import checkpoint, distributed
from opflow.run.distributed import ProcessGroup
from opflow.run.execution import Execution
from opflow.run.logs import run_log
from opflow.run.spec import Task, build_task_model
from opflow.schema import to_dict
from opflow.surrogate import Surrogate
from opflow.train.config import Config
from opflow.train.context import RunContext, parallel, run_context, shard_fields
from opflow.train.losses import relative_lp, training_loss
from opflow.train.stages import begin_stage, residual_loss
from opflow.train.trackers import open_tracker

__all__ = ["train", "learning_rate", "evaluate_split"]

log = logging.getLogger(__name__)


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
        static_variables=list(data.static_variables),
    )


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


def _initialise_from(run: Path, model: torch.nn.Module, variables: list[str]) -> Normalizer:
    """Load the best weights of ``run`` into ``model``; returns that run's normaliser (the
    weights were trained for it). A CheckpointError where the models differ."""
    tensors, meta = checkpoint.load_checkpoint(run, "best")
    checkpoint.restore(tensors, meta, model)
    normalizer = Normalizer.from_json(meta["normalizer"])
    missing = [v for v in variables if v not in normalizer.mean]
    if missing:
        raise ConfigError(
            f"training.init_from: {run} was trained without the variables {missing}",
            "a run over the same variables",
            "initialise from a run with these variables, or start from random weights",
        )
    return normalizer


def _batches(train_set, batch_size: int, seed: int, epoch: int) -> list[torch.Tensor]:
    """The epoch's batches, shuffled by a generator seeded by ``(seed, epoch)``."""
    return train_set.batches(batch_size, torch.Generator().manual_seed(seed * 1_000_003 + epoch))


def _training_pairs(config: Config, data: FieldData, modes, ctx: RunContext):
    """The training split of the data file, or of every file of a multi-resolution run
    (``data.path`` a list: each batch from one grid)."""
    paths = config.data.paths
    if len(paths) == 1:
        return data.dataset("train")
    if ctx.group.spatial > 1:
        raise ConfigError(
            f"data.path lists {len(paths)} grids with training.spatial_parallel > 1",
            "one grid when fields are split across processes",
            "train on one file, or with training.spatial_parallel: 1",
        )
    parts = [data] + [FieldData(config.data, path) for path in paths[1:]]
    for part in parts[1:]:
        if modes:
            part.check_resolution(modes)
    return MultiGridDataset([part.dataset("train") for part in parts])


def evaluate_split(
    surrogate: Surrogate, dataset, batch_size: int, ctx: RunContext | None = None
) -> float:
    """Mean relative L2 error (physical units) over a dataset, averaged over variables.

    In a multi-process run each process evaluates its share and the sums are combined.
    """
    ctx = ctx or RunContext(Execution(surrogate.device), ProcessGroup(), workers=0)
    n_out = len(surrogate.task.output_variables)
    metric = per_variable(functools.partial(relative_lp, field_sum=ctx.field_sum), n_out)
    total = 0.0
    batches = [ctx.group.shard(b) for b in dataset.batches(batch_size)]
    with torch.no_grad(), ctx.execution.autocast():
        for x, y in ctx.loader(dataset, [b for b in batches if len(b)]):
            total += metric(surrogate.predict(x), y).item() * len(x)
    (total,) = ctx.group.sum([total], ctx.execution.device)
    return total / max(1, len(dataset))


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


def train(
    config: Config, resume: bool | Literal["if-present"] = False, progress: bool | None = None
) -> Path:
    """Train the model of ``config``; returns the run directory.

    ``resume``: ``True`` continues the run in ``training.output_dir`` from its last checkpoint
    (an error if there is none: a mistyped directory must not start a new run unnoticed);
    ``"if-present"`` continues it if there is one and starts it otherwise (scripts that are
    re-run, like ``opflow quickstart``). Run under ``torchrun`` it trains data-parallel over
    the processes torchrun started.
    """
    if resume == "if-present":
        resume = checkpoint.has_checkpoint(Path(config.training.output_dir))
    if config.training.threads:
        torch.set_num_threads(config.training.threads)
    check_time_steps(config.data, config.training.rollout)
    data = FieldData(config.data)
    ctx = run_context(config, data)
    run_dir = Path(config.training.output_dir)
    try:
        checkpoint.check_run_dir(run_dir, resume, ctx.group.is_main)
        with run_log(run_dir if ctx.group.is_main else None):
            return _train(config, data, ctx, resume, progress)
    except RuntimeError as err:  # a gradient all-reduce fails inside backward()
        failure = (
            distributed.peer_failure(err, ctx.group.rank) if ctx.group.is_distributed else None
        )
        if failure is None:
            raise
        raise failure from None
    finally:
        ctx.group.leave()


def _train(config: Config, data: FieldData, ctx: RunContext, resume: bool, progress) -> Path:
    run_dir = Path(config.training.output_dir)
    tcfg, execution, group = config.training, ctx.execution, ctx.group

    task = _task(config.data, tcfg.rollout)
    torch.manual_seed(tcfg.seed)
    model = build_task_model(config.model.name, config.model.args, task, data.grid.sizes)
    if modes := kept_modes(model):
        data.check_resolution(modes)
    train_set, val_set = _training_pairs(config, data, modes, ctx), data.dataset("val")
    if len(train_set) == 0:
        raise ConfigError(
            "The training split is empty", "at least one sample", "raise data.split.train"
        )
    variables = list(dict.fromkeys(task.input_variables + task.output_variables))
    variables += task.static_variables
    normalizer = Normalizer.fit(data, "train", variables)
    # staged models (SpecBoost) train one stage after another, each with its own optimizer
    # and learning-rate schedule over an equal share of the epochs
    n_stages = stage_count(model)
    if tcfg.epochs % n_stages:
        raise ConfigError(
            f"training.epochs={tcfg.epochs} for a model of {n_stages} stages",
            f"a multiple of {n_stages} (the epochs are split evenly between the stages)",
            f"use training.epochs={n_stages * max(1, round(tcfg.epochs / n_stages))}",
        )
    stage_epochs = tcfg.epochs // n_stages

    start_epoch, best = 0, math.inf
    tensors = meta = None
    if resume:
        tensors, meta = checkpoint.load_checkpoint(run_dir, "last")
        start_epoch, best = meta["epoch"] + 1, meta.get("best_val", math.inf)
    stage = min(start_epoch // stage_epochs, n_stages - 1)
    if n_stages > 1:
        model.set_stage(stage)
    if tcfg.init_from and not resume:  # a resumed run has its own weights by now
        normalizer = _initialise_from(Path(tcfg.init_from), model, variables)
    model.to(execution.device, execution.dtype)
    surrogate = Surrogate(model, normalizer, task, data.grid)
    shard_fields(surrogate, ctx)  # training.spatial_parallel: each rank holds some rows
    optimizer = _optimizer(config, model, stage)
    if resume:
        same_stage = n_stages == 1 or meta["epoch"] // stage_epochs == stage
        # a checkpoint from the end of the previous stage holds that stage's optimizer
        checkpoint.restore(tensors, meta, model, optimizer if same_stage else None, rng=True)
        normalizer = Normalizer.from_json(meta["normalizer"])
        surrogate.normalizer = normalizer
    loss_fn = training_loss(config, data, task, normalizer, ctx.field_sum)
    frozen = None  # a later stage's frozen predecessors' prediction, once per stage
    if n_stages > 1 and stage > 0 and start_epoch < tcfg.epochs:  # resumed in a later stage
        rescale = start_epoch == stage * stage_epochs  # at its start; else the scale is restored
        frozen = begin_stage(surrogate, stage, train_set, tcfg.batch_size, ctx, rescale)
    metrics_path = run_dir / "metrics.jsonl"
    tracker = None
    if group.is_main:
        # first: a tracker that is not installed stops the run before it writes anything
        tracker = open_tracker(tcfg.tracker, run_dir, to_dict(config))
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(run_dir / "config.yaml", yaml.safe_dump(to_dict(config)).encode())
        if tcfg.init_from and not resume:
            log.info("weights from the best checkpoint of %s", tcfg.init_from)
        rows = _read_metrics(metrics_path, start_epoch - 1)
        atomic_write_bytes(metrics_path, "".join(json.dumps(r) + "\n" for r in rows).encode())
    network = parallel(surrogate.task_model, ctx, tcfg.compile)
    scaler = execution.grad_scaler()

    steps_per_epoch = len(train_set.batches(tcfg.batch_size))
    total_steps = steps_per_epoch * stage_epochs
    for epoch in range(start_epoch, tcfg.epochs):
        started = time.perf_counter()
        if n_stages > 1 and epoch // stage_epochs != stage:
            stage = epoch // stage_epochs
            model.set_stage(stage)
            frozen = begin_stage(surrogate, stage, train_set, tcfg.batch_size, ctx)
            optimizer = _optimizer(config, model, stage)
            network = parallel(surrogate.task_model, ctx, tcfg.compile)  # new trainable set
            if group.is_main:
                log.info("stage %d/%d", stage + 1, n_stages)
        stage_step = (epoch - stage * stage_epochs) * steps_per_epoch
        model.train()
        batches = _batches(train_set, tcfg.batch_size, tcfg.seed, epoch)
        # this process's part of each global batch, and its share of the batch's mean loss
        # (x world size: DDP averages the gradients over the processes)
        mine = [group.shard(b) for b in batches]
        shares = [len(m) / len(b) for m, b in zip(mine, batches)]
        # a process with no sample in a short last batch still steps with the others: it runs
        # one sample with weight 0, so that DDP's all-reduce sees every process
        mine = [m if len(m) else b[:1] for m, b in zip(mine, batches)]
        running = 0.0
        bar = tqdm(
            ctx.loader(train_set, mine),
            total=len(mine),
            desc=f"epoch {epoch + 1}/{tcfg.epochs}",
            leave=False,
            # None: on when stderr is a terminal (off in logs, pipes and batch jobs)
            disable=not group.is_main or (None if progress is None else not progress),
        )
        for i, (x, y) in enumerate(bar):
            lr = learning_rate(config, stage_step + i, total_steps, steps_per_epoch)
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr
            with execution.autocast():
                z = normalizer.encode(x, task.input_variables, task.t_in, task.static_variables)
                previous = frozen.batch(mine[i]) if frozen is not None else None
                pred = network(z) if previous is None else network(z, previous=previous)
                pred = normalizer.decode(pred, task.output_variables, task.t_out)
                loss = loss_fn(pred, y)
                if stage > 0:
                    objective = residual_loss(surrogate, loss_fn, z, pred, y, previous)
                else:
                    objective = loss
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(objective * (shares[i] * group.world_size)).backward()
            scaler.step(optimizer)
            scaler.update()
            running += loss.item() * shares[i]
            if group.is_main:
                bar.set_postfix(loss=f"{running / (i + 1):.4f}")
        (running,) = group.sum([running], execution.device)
        model.eval()
        val = evaluate_split(surrogate, val_set, tcfg.batch_size, ctx) if len(val_set) else math.nan
        row = {
            "epoch": epoch,
            "train_loss": running / len(batches),
            "val_rel_l2": val,
            "lr": lr,
            "seconds": round(time.perf_counter() - started, 3),
        }
        if math.isfinite(val):
            improved, best = val < best, min(best, val)
        else:  # no validation split: the latest weights are the best we know
            improved = True
        if group.is_main:
            _report(row, metrics_path, tracker, tcfg.epochs)
            last_epoch = epoch == tcfg.epochs - 1
            if improved or last_epoch or (epoch + 1) % tcfg.checkpoint_every == 0:
                tags = ["last"] + (["best"] if improved else [])
                meta = _meta(
                    config,
                    normalizer,
                    data.grid,
                    task,
                    best_val=best,
                    val_rel_l2=val,
                    **data.time_step,
                    **data.units,
                )
                if n_stages > 1:  # a "best" checkpoint from an early stage runs only its stages
                    meta["active_stages"] = model.active_stages
                checkpoint.save_checkpoint(run_dir, tags, epoch, model, optimizer, meta)
    if tracker is not None:
        tracker.close()
    group.barrier()  # no process leaves before rank 0 has written the last checkpoint
    return run_dir


def _report(row: dict, metrics_path: Path, tracker, epochs: int) -> None:
    """Append an epoch's row to metrics.jsonl (and the tracker), log it."""
    with open(metrics_path, "a") as f:
        f.write(json.dumps(row) + "\n")
    if tracker is not None:
        tracker.log(row)
    log.info(
        "epoch %d/%d  train %.4f  val rel L2 %.4f  (%.1fs)",
        row["epoch"] + 1,
        epochs,
        row["train_loss"],
        row["val_rel_l2"],
        row["seconds"],
    )
