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

from opflow.errors import OpflowError

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

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints progress."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    def shard(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous part of a global batch (parts differ by at most one item).

        Concatenating every rank's part in rank order gives ``indices`` back, so N processes
        see exactly the samples one process would, in the same order.
        """
        return indices.tensor_split(self.world_size)[self.rank]

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        """Element-wise sum of ``values`` over all ranks (for reporting, not for gradients)."""
        if not self.is_distributed:
            return list(values)
        # float64 so that sums of per-sample errors do not depend on the number of ranks
        # beyond rounding; NCCL reduces CUDA tensors only
        buffer = torch.tensor(values, dtype=torch.float64, device=device)
        _collective(dist.all_reduce, buffer)
        return buffer.tolist()

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


def join(device: torch.device, timeout_s: float) -> ProcessGroup:
    """Join the group torchrun described in the environment (a group of one otherwise).

    ``timeout_s`` bounds every collective: a process whose peer died or hangs fails with
    :class:`DistributedError` after at most that long instead of waiting for ever.
    """
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
    return ProcessGroup(rank, world, local_rank)
