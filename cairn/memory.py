"""What the node may hold in memory, and how much it holds: the `--cache` budget split between
the caches, a thread-safe LRU bounded by an estimate of bytes, and `Footprint`, the (entries,
bytes) figure every bounded structure reports to /metrics.

Every structure that lives as long as the node is one of these caches, has a limit of its own
(the txpool: `--txpool.max-bytes`), or is emptied as blocks commit; none is bounded by the
length of the chain. Sizes are estimates from the encoded sizes of what is held, calibrated
with tracemalloc (docs/operations.md, "Memory budget"); they are not measured at run time.
Below every component: imports nothing from Cairn.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

MIB = 1024 * 1024
DEFAULT_CACHE_MIB = 256
DEFAULT_TXPOOL_BYTES = 128 * MIB

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class Footprint:
    """One bounded structure's size: how many entries it holds and an estimate of their bytes;
    `limit_bytes` is its configured bound (0 when it is bounded by an entry count instead)."""

    name: str
    entries: int
    bytes: int
    limit_bytes: int = 0


@dataclass(frozen=True)
class MemoryBudget:
    """`--cache` (MiB shared by the caches below) and `--txpool.max-bytes`.

    The shares are fixed: LevelDB's block cache 1/4, decoded blocks 1/4, formatted block and
    receipt JSON 1/4, the log index 1/8, decoded headers 1/8.
    """

    cache_mib: int = DEFAULT_CACHE_MIB
    txpool_bytes: int = DEFAULT_TXPOOL_BYTES

    def __post_init__(self) -> None:
        if self.cache_mib < 4:
            raise ValueError(f"--cache must be at least 4 (MiB), got {self.cache_mib}")
        if self.txpool_bytes < 1 * MIB:
            raise ValueError(
                f"--txpool.max-bytes must be at least {MIB} (1 MiB), got {self.txpool_bytes}"
            )

    @property
    def total(self) -> int:
        return self.cache_mib * MIB

    @property
    def leveldb(self) -> int:
        return self.total // 4

    @property
    def blocks(self) -> int:
        return self.total // 4

    @property
    def rpc_json(self) -> int:
        """Formatted blocks and block receipts, half each."""
        return self.total // 4

    @property
    def logs(self) -> int:
        return self.total // 8

    @property
    def headers(self) -> int:
        return self.total // 8


DEFAULT_BUDGET = MemoryBudget()


class SizedLru(Generic[K, V]):
    """Least-recently-used values bounded by the sum of their sizes (an estimate of the bytes
    each holds: `size_of(value)`, or the size given to `put`). A value larger than the whole
    limit is returned but not kept. Safe to share between threads; values are built outside
    the lock."""

    def __init__(
        self, name: str, limit_bytes: int, size_of: Callable[[V], int] = lambda _: 1
    ) -> None:
        self.name = name
        self.limit_bytes = limit_bytes
        self._size_of = size_of
        self._items: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            self._items.move_to_end(key)
            return found[0]

    def put(self, key: K, value: V, size: int | None = None) -> None:
        if size is None:
            size = self._size_of(value)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            if size > self.limit_bytes:
                return
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.limit_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def get_or_build(self, key: K, build: Callable[[], V]) -> V:
        found = self.get(key)
        if found is not None:
            return found
        value = build()  # outside the lock: building may be slow; a duplicate build is harmless
        self.put(key, value)
        return value

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    def footprint(self) -> Footprint:
        with self._lock:
            return Footprint(self.name, len(self._items), self._bytes, self.limit_bytes)


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes(pid: int) -> int | None:
    """Resident memory of process `pid` (Linux /proc), None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except OSError:
        return None
    return int(fields[1]) * _PAGE
