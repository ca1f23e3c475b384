"""The process group of a data-parallel run, as launched by ``torchrun``.

``torchrun --nproc-per-node N -m opflow train CONFIG`` starts N processes and sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in each one's environment;
:func:`join` turns that into a :class:`ProcessGroup` (gloo on the CPU, NCCL on CUDA). A
process started without them is a group of one: the same training code, no collectives.

Gradients are averaged by :class:`torch.nn.parallel.DistributedDataParallel`; this module only
shards the sample order and sums the few numbers an epoch reports (losses, errors).
"""

from __future__ import annotations

import dataclasses
import datetime
import os

import torch
import torch.distributed as dist

from opflow.errors import ConfigError, OpflowError
from opflow.spectral.sharded import shard_bounds

__all__ = ["ProcessGroup", "join", "DistributedError", "launched_by_torchrun", "peer_failure"]


class DistributedError(OpflowError, RuntimeError):
    """A process of a multi-process run failed or could not be reached."""


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclasses.dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    # domain parallelism: ``spatial`` consecutive ranks share each field; theirs is ``fields``
    spatial: int = 1
    fields: dist.ProcessGroup | None = dataclasses.field(default=None, compare=False)

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def replicas(self) -> int:
        """Data-parallel replicas: groups of ``spatial`` ranks, each holding whole samples."""
        return self.world_size // self.spatial

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's replica's contiguous part of a global batch (parts differ by at most
        one item; the ranks sharing a field take the same part).

        Concatenating every replica's part in order gives ``indices`` back, so N processes
        see exactly the samples one process would, in the same order.
        """
        return indices.tensor_split(self.replicas)[self.rank // self.spatial]

    def rows(self, n: int) -> tuple[int, int]:
        """This rank's rows ``(start, stop)`` of a field's first spatial axis of ``n``."""
        return shard_bounds(n, self.spatial)[self.rank % self.spatial]

    def field_sum(self, partial: torch.Tensor) -> torch.Tensor:
        """The sum over the ranks sharing a field of ``partial`` (e.g. a sum of squares over
        this rank's rows), with the gradient of this rank's own term: every rank computes the
        same loss from the totals and backpropagates into its own rows only."""
        if self.spatial == 1:
            return partial
        total = partial.detach().clone()
        _collective(dist.all_reduce, total, dist.ReduceOp.SUM, self.fields)
        return partial + (total - partial.detach())

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over the replicas (for reporting, not for
        gradients): the ranks sharing a field hold the same values and count once."""
        if not self.is_distributed:
            return list(values)
        # float64 so that sums of per-sample errors do not depend on the number of ranks
        # beyond rounding; NCCL reduces CUDA tensors only
        buffer = torch.tensor(values, dtype=torch.float64, device=device)
        _collective(dist.all_reduce, buffer)
        return (buffer / self.spatial).tolist()

    def barrier(self) -> None:
        if self.is_distributed:
            _collective(dist.barrier)

    def leave(self) -> None:
        """Leave the group (at the end of a run, or on an error)."""
        if self.is_distributed and dist.is_initialized():
            dist.destroy_process_group()


_PEER_FAILURE = ("gloo", "nccl", "connection", "timed out", "timeout", "peer")


def peer_failure(err: BaseException, rank: int) -> DistributedError | None:
    """The opflow error for ``err`` if it is a collective's failure (a peer process died, hung
    or cannot be reached: gloo and NCCL raise these as plain RuntimeErrors), else None."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if not isinstance(err, dist.DistError) and not any(k in text.lower() for k in _PEER_FAILURE):
        return None
    return DistributedError(
        f"rank {rank}: a collective operation failed: another process of the run stopped or "
        f"cannot be reached ({text[:160]})",
        "every process of the run alive until the end",
        "see the other processes' output for the first error; the last checkpoint is "
        "intact: rerun with --resume (with any number of processes)",
    )


def _collective(op, *args):
    try:
        return op(*args)
    except RuntimeError as err:  # DistError is a RuntimeError
        raise (peer_failure(err, dist.get_rank()) or err) from None


def join(device: torch.device, timeout_s: float, spatial: int = 1) -> ProcessGroup:
    """Join the group torchrun described in the environment (a group of one otherwise).

    ``timeout_s`` bounds every collective: a process whose peer died or hangs fails with
    :class:`DistributedError` after at most that long instead of waiting for ever.
    ``spatial``: ranks that share each field (consecutive ranks, one sub-group each).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world % spatial:
        raise ConfigError(
            f"training.spatial_parallel={spatial} with {world} process(es)",
            "a number of processes divisible by spatial_parallel",
            f"launch {spatial * max(1, world // spatial)} processes, or lower spatial_parallel",
        )
    if not launched_by_torchrun():
        return ProcessGroup()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
        except (RuntimeError, ValueError, dist.DistError) as err:
            raise DistributedError(
                f"rank {rank} of {world} could not join the process group over {backend} "
                f"({str(err).splitlines()[0][:200]})",
                "MASTER_ADDR/MASTER_PORT (or --rdzv-endpoint) reachable from every process",
                "check the torchrun rendezvous arguments and the network between the nodes",
            ) from None
    fields = None
    if spatial > 1:  # every rank creates every sub-group, in the same order (torch's rule)
        for first in range(0, world, spatial):
            group = dist.new_group(list(range(first, first + spatial)))
            if first <= rank < first + spatial:
                fields = group
    return ProcessGroup(rank, world, local_rank, spatial, fields)
