"""Giving memory back to the system after a request that made the node hold a lot of it.

A refused batch, a trace stopped at its byte budget, a WebSocket client dropped with its
queue: each frees tens of megabytes of large strings at once. glibc keeps such freed
memory in its heaps (fragmented between live blocks, it is not returned by itself), so the
node's RSS stayed hundreds of MB above where it started after an attack had ended.
`release_soon()` asks glibc to return it (`malloc_trim`), off the event loop, at most once
every few seconds. Must never be called on a hot path for every request: only after
something large was let go. Without glibc it does nothing.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
import time
from collections.abc import Callable

log = logging.getLogger("cairn.rpc")
MIN_INTERVAL = 5.0  # seconds between two trims


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:  # not glibc (musl has none)
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim  # type: ignore[no-any-return]  # a ctypes function pointer


_TRIM = _malloc_trim()


class MemoryReleaser:
    """Debounced `malloc_trim(0)` on a worker thread (ctypes lets go of the GIL meanwhile)."""

    def __init__(self, min_interval: float = MIN_INTERVAL) -> None:
        self._min_interval = min_interval
        self._last = 0.0
        self._pending: asyncio.Handle | None = None

    def release_soon(self) -> None:
        if _TRIM is None or self._pending is not None:
            return
        loop = asyncio.get_running_loop()
        wait = max(0.0, self._last + self._min_interval - time.monotonic())
        self._pending = loop.call_later(wait, self._start)

    def _start(self) -> None:
        self._pending = None
        self._last = time.monotonic()
        future = asyncio.get_running_loop().run_in_executor(None, _trim)
        future.add_done_callback(_log_failure)


def _trim() -> None:
    assert _TRIM is not None
    _TRIM(0)


def _log_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("malloc_trim failed: %r", future.exception())
