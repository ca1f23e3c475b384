"""``(input, target)`` pairs cut from a :class:`~opflow.data.dataset.FieldData`, as a torch
dataset that reads whole batches at once.

A pair is a sample and the start ``t0`` of its input window:

* ``input``: ``(len(input_variables) * t_in + len(static_variables), *spatial)`` -- ``t_in``
  consecutive time steps of each input variable, variable-major, then the static fields;
* ``target``: ``(len(output_variables) * t_out, *spatial)`` -- the ``t_out`` steps after them.

Data without a time dim map input variables to output variables directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
import xarray as xr

from opflow.errors import ShapeError

if TYPE_CHECKING:
    from opflow.data.dataset import FieldData

__all__ = ["WindowDataset", "MultiGridDataset", "batch_loader"]


class WindowDataset(torch.utils.data.Dataset):
    """``(input, target)`` float32 tensor pairs: every window start of ``starts`` in every
    sample of ``indices`` (item ``i`` is sample ``indices[i // len(starts)]`` from
    ``starts[i % len(starts)]``)."""

    def __init__(
        self,
        data: FieldData,
        indices: np.ndarray,
        starts: Sequence[int],
        rows: tuple[int, int] | None = None,
    ):
        self.data = data
        self.indices = indices
        self.starts = list(starts)
        self.rows = rows  # of the first spatial axis; None: whole fields

    def with_rows(self, rows: tuple[int, int]) -> WindowDataset:
        """The same pairs, holding only ``rows`` of the first spatial axis (domain
        parallelism: lazily read data is read only there)."""
        return WindowDataset(self.data, self.indices, self.starts, rows)

    def __len__(self) -> int:
        return len(self.indices) * len(self.starts)

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """Item indices in batches of ``batch_size``: in order, or shuffled by ``generator``."""
        n = len(self)
        order = torch.arange(n) if generator is None else torch.randperm(n, generator=generator)
        return list(order.split(batch_size))

    def _sample_and_start(self, item: int) -> tuple[int, int]:
        return int(self.indices[item // len(self.starts)]), self.starts[item % len(self.starts)]

    def batch(self, items) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked ``(inputs, targets)`` of the pairs ``items`` (any iterable of indices)."""
        cfg = self.data.config
        pairs = [self._sample_and_start(int(i)) for i in items]
        samples = sorted({s for s, _ in pairs})
        span = cfg.t_in + cfg.t_out if cfg.time_dim else 0
        if self.data.lazy:  # read what the batch needs at once, then cut the windows
            # a time series is one long sample: read only the windows' time steps
            times = sorted({t for _, t0 in pairs for t in range(t0, t0 + span)})
            source = self.data.read(samples, self.rows, times if self.data.series else None)
            sample_at = {s: k for k, s in enumerate(samples)}
            time_at = {t: k for k, t in enumerate(times)} if self.data.series else None
        else:
            source, sample_at, time_at = self.data.ds, {s: s for s in samples}, None
            if self.rows is not None:
                source = source.isel({cfg.spatial_dims[0]: slice(*self.rows)})
        xs, ys = [], []
        for sample, t0 in pairs:
            x, y = self._pair(source, sample_at[sample], t0, time_at)
            xs.append(x)
            ys.append(y)
        return torch.stack(xs), torch.stack(ys)

    def _pair(
        self, source: xr.Dataset, sample: int, t0: int, time_at: dict[int, int] | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cfg, data = self.data.config, self.data

        def steps(a: int, b: int):  # positions in ``source`` of the file's steps a..b-1
            return slice(a, b) if time_at is None else [time_at[t] for t in range(a, b)]

        if cfg.time_dim:
            x = data.fields(cfg.input_variables, sample, steps(t0, t0 + cfg.t_in), source)
            end = t0 + cfg.t_in + cfg.t_out
            y = data.fields(cfg.outputs, sample, steps(t0 + cfg.t_in, end), source)
        else:
            x = data.fields(cfg.input_variables, sample, None, source)
            y = data.fields(cfg.outputs, sample, None, source)
        if cfg.static_variables:
            x = np.concatenate((x, data.fields(cfg.static_variables, sample, None, source)))
        return torch.from_numpy(x), torch.from_numpy(y)

    def loader(
        self, batches: list[torch.Tensor], workers: int = 0, pin_memory: bool = False
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """:func:`batch_loader` over this dataset."""
        return batch_loader(self, batches, workers, pin_memory)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.batch([item])
        return x[0], y[0]


class MultiGridDataset:
    """The pairs of several :class:`WindowDataset` s of the same data at different grids, for
    multi-resolution training: item ``i`` of part ``k`` is item ``offset_k + i``, and every
    batch holds items of one part (one grid), so that it stacks into one tensor."""

    def __init__(self, parts: Sequence[WindowDataset]):
        self.parts = list(parts)
        self.offsets = np.cumsum([0] + [len(p) for p in self.parts])

    @property
    def data(self) -> FieldData:
        """The first part's data: the training grid."""
        return self.parts[0].data

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def batches(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """Each part's batches (of its items only), shuffled within each part and then in
        their order across parts by ``generator``; in order without one."""
        batches = [
            b + int(offset)
            for part, offset in zip(self.parts, self.offsets)
            for b in part.batches(batch_size, generator)
        ]
        if generator is None:
            return batches
        return [batches[i] for i in torch.randperm(len(batches), generator=generator)]

    def batch(self, items) -> tuple[torch.Tensor, torch.Tensor]:
        """Stacked ``(inputs, targets)`` of ``items``, all of one part."""
        items = torch.as_tensor(list(items))
        part = int(np.searchsorted(self.offsets, int(items[0]), side="right")) - 1
        start, stop = self.offsets[part], self.offsets[part + 1]
        if not bool(((items >= start) & (items < stop)).all()):
            raise ShapeError(
                f"a batch of items {items.tolist()[:8]} from several grids",
                f"items of one grid (part {part}: {start}..{stop - 1})",
                "draw batches with MultiGridDataset.batches",
            )
        return self.parts[part].batch(items - int(start))

    def loader(
        self, batches: list[torch.Tensor], workers: int = 0, pin_memory: bool = False
    ) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        """:func:`batch_loader` over the parts."""
        return batch_loader(self, batches, workers, pin_memory)


def batch_loader(
    dataset, batches: list[torch.Tensor], workers: int = 0, pin_memory: bool = False
) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """``dataset.batch(b)`` for each index list ``b`` of ``batches``, in order.

    With ``workers > 0`` that many processes read the batches ahead (a
    :class:`torch.utils.data.DataLoader`, two batches each), so that reading data from disk
    overlaps with training instead of adding to it.
    """
    if workers == 0:
        return (dataset.batch(b) for b in batches)
    return torch.utils.data.DataLoader(
        _BatchReader(dataset),
        sampler=batches,
        batch_size=None,  # the sampler yields whole batches; _BatchReader reads each
        num_workers=workers,
        pin_memory=pin_memory,
        worker_init_fn=_reader_init,
    )


class _BatchReader(torch.utils.data.Dataset):
    """A dataset whose items are whole batches: ``reader[indices] = dataset.batch(indices)``."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        return self.dataset.batch(indices)


def _reader_init(worker_id: int) -> None:
    """A reader process computes dask graphs in its own thread: the processes are the
    parallelism, and dask's thread pool would only compete with the training threads."""
    import dask

    dask.config.set(scheduler="synchronous")
