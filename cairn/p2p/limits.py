"""Bounds on what the p2p layer keeps per peer: `BoundedMap` (a dict with a size limit that
evicts its least useful entry, as its owner ranks them) and `ServeBudget` (per-peer token
buckets on the requests and answer bytes our sync server spends on a peer).

Pure bookkeeping with an injected clock: no py-libp2p, no trio, no I/O. The caller decides
what an exhausted budget does on the wire.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar, overload

K = TypeVar("K")
V = TypeVar("V")

# Peer ids any one map may remember. Connected peers are at most --p2p.maxpeers; the rest
# are peers we heard of or met before, and a peer id costs an attacker nothing to make.
MAX_TRACKED_PEERS = 4096


class BoundedMap(Generic[K, V]):
    """A dict of at most `limit` entries. Past it, without `rank` the least recently
    written entry is evicted; with `rank`, the lowest-ranked eighth of the map (never the
    entry just written) is evicted at once, so the sort that ranks them runs once per
    `limit / 8` new entries: amortised O(log n) per write, however fast ids arrive.
    Writing an entry makes it the most recent."""

    def __init__(self, limit: int, rank: Callable[[K, V], float] | None = None) -> None:
        if limit < 1:
            raise ValueError("a bounded map needs room for one entry")
        self.limit = limit
        self._rank = rank
        self._data: OrderedDict[K, V] = OrderedDict()
        self.evicted = 0

    def __setitem__(self, key: K, value: V) -> None:
        self._data[key] = value
        self._data.move_to_end(key)
        if len(self._data) > self.limit:
            self._evict(keep=key)

    def _evict(self, keep: K) -> None:
        if self._rank is None:
            victims = [next(iter(self._data))]
        else:
            rank, data = self._rank, self._data
            others = sorted((k for k in data if k != keep), key=lambda k: rank(k, data[k]))
            victims = others[: max(1, self.limit // 8)]
        for victim in victims:
            del self._data[victim]
        self.evicted += len(victims)

    def __getitem__(self, key: K) -> V:
        return self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __delitem__(self, key: K) -> None:
        del self._data[key]

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        return iter(self._data)

    @overload
    def get(self, key: K) -> V | None: ...
    @overload
    def get(self, key: K, default: V) -> V: ...
    def get(self, key: K, default: V | None = None) -> V | None:
        return self._data.get(key, default)

    def pop(self, key: K, default: V | None = None) -> V | None:
        return self._data.pop(key, default)

    def setdefault(self, key: K, default: V) -> V:
        if key not in self._data:
            self[key] = default
        return self._data[key]

    def items(self) -> list[tuple[K, V]]:
        return list(self._data.items())

    def values(self) -> list[V]:
        return list(self._data.values())

    def clear(self) -> None:
        self._data.clear()


# Sync serving, per peer. An honest follower asks for its peers' status every 2 s, for
# their peers every 10 s, and for ranges of 64 blocks as fast as it re-executes them (two
# in flight): a few requests a second, and answer bytes bounded by its import speed
# (py-evm re-executes ~2,800 transfers/s, about 0.3 MB/s of blocks). These budgets are far
# above that and far below what a loop of requests makes us read from disk and send.
SERVE_REQUESTS_PER_SECOND = 20.0
SERVE_REQUEST_BURST = 100.0
SERVE_BYTES_PER_SECOND = 16.0 * 1024 * 1024
SERVE_BYTES_BURST = 96.0 * 1024 * 1024


@dataclass
class _Bucket:
    requests: float
    bytes: float
    updated: float


class ServeBudget:
    """Token buckets per peer: one token per request, one per answer byte, refilled at a
    steady rate up to a burst. A request is served only while both buckets hold tokens;
    bytes are charged after the answer is built (so a large answer can overdraw once and
    the peer then waits for the refill)."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        requests_per_second: float = SERVE_REQUESTS_PER_SECOND,
        request_burst: float = SERVE_REQUEST_BURST,
        bytes_per_second: float = SERVE_BYTES_PER_SECOND,
        bytes_burst: float = SERVE_BYTES_BURST,
        limit: int = MAX_TRACKED_PEERS,
    ) -> None:
        self._clock = clock
        self.requests_per_second = requests_per_second
        self.request_burst = request_burst
        self.bytes_per_second = bytes_per_second
        self.bytes_burst = bytes_burst
        # Evicting a bucket hands that peer a full one: evict the fullest (least indebted).
        self._buckets: BoundedMap[str, _Bucket] = BoundedMap(
            limit, rank=lambda _k, b: -(b.requests / request_burst + b.bytes / bytes_burst)
        )

    def _refilled(self, peer: str) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.get(peer)
        if bucket is None:
            bucket = _Bucket(self.request_burst, self.bytes_burst, now)
        else:
            elapsed = max(0.0, now - bucket.updated)
            bucket.requests = min(
                self.request_burst, bucket.requests + elapsed * self.requests_per_second
            )
            bucket.bytes = min(self.bytes_burst, bucket.bytes + elapsed * self.bytes_per_second)
            bucket.updated = now
        self._buckets[peer] = bucket
        return bucket

    def admit(self, peer: str) -> str | None:
        """Take one request token; None when the peer may be served, else why not."""
        bucket = self._refilled(peer)
        if bucket.requests < 1.0:
            return (
                f"more than {self.request_burst:.0f} sync requests at once or "
                f"{self.requests_per_second:.0f}/s"
            )
        if bucket.bytes <= 0.0:
            return (
                f"more than {self.bytes_burst / 2**20:.0f} MiB of sync answers at once or "
                f"{self.bytes_per_second / 2**20:.0f} MiB/s"
            )
        bucket.requests -= 1.0
        return None

    def charge(self, peer: str, size: int) -> None:
        """Count an answer's bytes against the peer."""
        self._refilled(peer).bytes -= size

    def __len__(self) -> int:
        return len(self._buckets)
