"""A small thread-safe LRU for formatted answers about committed blocks, and `RawJson`, the
JSON text such answers are held as.

Committed blocks never change, so their JSON can be built once; entries are keyed by block
hash, so a dev-chain rewind (another block at the same number) can never hit a stale one.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import orjson

V = TypeVar("V")


class RawJson:
    """JSON text built once (a formatted block, a block's receipts); the server embeds it in
    answers as it is, without decoding or re-encoding it. (A plain class on purpose: orjson
    would serialize a dataclass field by field.)"""

    __slots__ = ("raw",)

    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    @classmethod
    def of(cls, value: Any) -> RawJson:
        return cls(orjson.dumps(value))


class LruCache(Generic[V]):
    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_build(self, key: Hashable, build: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = build()  # outside the lock: building may be slow; a duplicate build is harmless
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return value
