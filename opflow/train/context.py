"""How a training run executes: device and precision, process group, reader processes, and
the DDP / torch.compile wrapping of the model — resolved once per run from the config.

The training loop (:mod:`opflow.train.trainer`) takes a :class:`RunContext` and never asks
where it runs.
"""

from __future__ import annotations

import dataclasses
import os

import torch

from opflow.data.dataset import FieldData
from opflow.models.sharded import ShardedFNO
from opflow.run import distributed
from opflow.run.distributed import ProcessGroup
from opflow.run.execution import Execution, retain_freed_cpu_memory
from opflow.run.spec import PhysicalTaskModel, TaskModel
from opflow.surrogate import Surrogate
from opflow.train.config import Config

__all__ = ["RunContext", "run_context", "parallel", "shard_fields"]


@dataclasses.dataclass
class RunContext:
    """What every step of a run shares: where it executes and which process this is."""

    execution: Execution
    group: ProcessGroup
    workers: int

    def loader(self, dataset, batches: list[torch.Tensor]):
        """``(x, y)`` of each index list, read ahead by the workers, on the run's device
        (this rank's rows of them where several ranks share each field)."""
        pin = self.execution.device.type == "cuda"
        if self.group.spatial > 1:
            dataset = dataset.with_rows(self.group.rows(dataset.data.grid.sizes[0]))
        for x, y in dataset.loader(batches, workers=self.workers, pin_memory=pin):
            yield self.execution.to(x), self.execution.to(y)

    @property
    def field_sum(self):
        """:meth:`ProcessGroup.field_sum` where fields are shared, else ``None``."""
        return self.group.field_sum if self.group.spatial > 1 else None


def run_context(config: Config, data: FieldData) -> RunContext:
    """Resolve the device and precision, join the process group torchrun set up (if any)."""
    tcfg = config.training
    execution = Execution.resolve(tcfg.device, tcfg.precision)
    if execution.device.type == "cpu" and tcfg.retain_cpu_memory:
        retain_freed_cpu_memory()
    group = distributed.join(execution.device, tcfg.collective_timeout_s, tcfg.spatial_parallel)
    if group.is_distributed and execution.device.type == "cuda":  # pragma: no cover - GPU
        execution = dataclasses.replace(execution, device=torch.device("cuda", group.local_rank))
        torch.cuda.set_device(execution.device)
    workers = tcfg.workers if tcfg.workers is not None else _default_workers(data, execution)
    return RunContext(execution, group, workers)


def _default_workers(data: FieldData, execution: Execution) -> int:
    """Reader processes for data read from disk: two where they do not take cores from
    training (a GPU trains, or the CPU has cores beyond torch's threads), else none (on a
    2-core CPU they slowed a lazily read quickstart epoch by 15-25%, measured)."""
    if not data.lazy:
        return 0
    if execution.device.type == "cuda":
        return 2
    return max(0, min(2, (os.cpu_count() or 1) - torch.get_num_threads()))


def shard_fields(surrogate: Surrogate, ctx: RunContext) -> None:
    """Where ranks share each field, run ``surrogate``'s model on this rank's rows
    (:class:`~opflow.models.sharded.ShardedFNO`: the same parameters, so the checkpoints are
    the unsharded model's). Gradients: every rank of a field backpropagates the same loss into
    its own rows; DDP over all ranks, with each loss weighted by the world size, then sums
    them per field and averages over the replicas."""
    if ctx.group.spatial == 1:
        return
    sharded = ShardedFNO(surrogate.model, ctx.group.fields, tuple(surrogate.grid.sizes))
    surrogate.task_model = TaskModel(sharded, surrogate.task)
    surrogate.physical_model = PhysicalTaskModel(surrogate.task_model, surrogate.normalizer)


def parallel(module: torch.nn.Module, ctx: RunContext, compile_: bool) -> torch.nn.Module:
    """``module`` as the training step calls it: DDP-wrapped in a multi-process run (the
    gradient all-reduce is DDP's), compiled with ``training.compile``."""
    if ctx.group.is_distributed:
        device_ids = [ctx.execution.device] if ctx.execution.device.type == "cuda" else None
        module = torch.nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
    return torch.compile(module) if compile_ else module
