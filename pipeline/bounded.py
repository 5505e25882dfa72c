"""An ordered cache bounded by records AND bytes: the shape of every cache and queue the pipeline keeps.

A record count alone bounds nothing when records are up to 1 MiB each (issue 17: 1,200
distinct 1 MB samples took the consumer from 160 MB to 2.5 GB). So each structure also
has a byte budget, counted with the lengths of the strings and bytes it keeps (a cheap,
stable approximation: no `sys.getsizeof` walks), and forgets its oldest entries, first
in first out (or least recently used, for callers that `move_to_end` on a hit), until it
is under both. The ceilings are in the README ("Memory bounds") and exported as
`jwtriage_cache_entries` / `jwtriage_cache_bytes`.

A subclass of `OrderedDict` so that reads (`get`, `in`, iteration, `move_to_end`) cost
what a dict costs; writes and removals go through `put` and `discard`, which keep the byte
count (never assign, `del` or `pop` directly).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any, TypeVar

K = TypeVar("K")
V = TypeVar("V")

_MISSING: Any = object()


class BoundedCache(OrderedDict[K, V]):
    """Forgets its oldest entries past `capacity` records or `max_bytes` bytes (as `size(key, value)` counts)."""

    def __init__(self, capacity: int, max_bytes: int, size: Callable[[K, V], int]) -> None:
        super().__init__()
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.bytes = 0
        self._size = size

    def put(self, key: K, value: V, *, move: bool = True) -> None:
        """Keep `value` under `key` (newest, unless `move` is False and the key was already kept)."""
        if key in self:
            self.bytes -= self._size(key, self[key])
            self[key] = value
            if move:
                self.move_to_end(key)
        else:  # the usual case: a new key goes to the end by itself
            self[key] = value
        self.bytes += self._size(key, value)
        while len(self) > self.capacity or self.bytes > self.max_bytes:
            oldest, evicted = self.popitem(last=False)
            self.bytes -= self._size(oldest, evicted)

    def discard(self, key: K) -> V | None:
        """Forget `key`; its value, or None when it was not kept."""
        value = OrderedDict.pop(self, key, _MISSING)
        if value is _MISSING:
            return None
        self.bytes -= self._size(key, value)
        return value
