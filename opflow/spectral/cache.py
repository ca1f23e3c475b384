"""Caches of constant tensors (DFT and Legendre matrices, slot maps, basis stencils).

Bounded (least recently used go first), keyed by everything the tensor depends on — device and
dtype included, so each device holds its own copy — and guarded: the tensors are shared, so a
caller that modified one in place would silently change every later transform. Each entry
remembers its tensors' version counters (torch bumps them on every in-place write) and a cache
hit on a modified tensor raises instead of handing it out.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch

__all__ = ["ConstantCache", "constant_cache"]


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [t for item in value for t in _tensors(item)]
    if hasattr(value, "__dataclass_fields__"):
        return [t for name in value.__dataclass_fields__ for t in _tensors(getattr(value, name))]
    return []


class ConstantCache:
    """``get(key, build)``: the value built once for ``key``, at most ``maxsize`` kept."""

    def __init__(self, maxsize: int = 64):
        self.maxsize = maxsize
        self._entries: OrderedDict[Hashable, tuple[Any, list[int]]] = OrderedDict()

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        entry = self._entries.get(key)
        if entry is not None:
            value, versions = entry
            if [t._version for t in _tensors(value)] != versions:
                raise RuntimeError(
                    f"a cached constant of opflow's spectral core ({key!r}) was modified in "
                    "place; it is shared by every transform of that shape: clone it before "
                    "writing to it"
                )
            self._entries.move_to_end(key)
            return value
        value = build()
        self._entries[key] = (value, [t._version for t in _tensors(value)])
        if len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()


def constant_cache(maxsize: int = 128) -> Callable[[Callable], Callable]:
    """Decorator: cache a function of hashable arguments that returns constant tensors (or
    tuples / dataclasses of them) in a :class:`ConstantCache`."""

    def decorate(function: Callable) -> Callable:
        cache = ConstantCache(maxsize)

        @functools.wraps(function)
        def cached(*args, **kwargs):
            key = (args, tuple(sorted(kwargs.items())))
            return cache.get(key, lambda: function(*args, **kwargs))

        cached.cache = cache
        cached.cache_clear = cache.clear
        return cached

    return decorate
