"""Log filters (eth_getLogs, eth_newFilter, logs subscriptions): parsing and matching, and
`LogIndex`, each recently read block's logs formatted and indexed once (bounded in bytes)."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from eth_bloom import BloomFilter

from cairn.execution.reader import StoredBlock
from cairn.memory import Footprint, SizedLru
from cairn.rpc import params
from cairn.rpc.errors import invalid_params
from cairn.rpc.format import format_logs

# topics[i] is None (any), or a tuple of alternatives
TopicSpec = tuple[tuple[bytes, ...] | None, ...]


@dataclass(frozen=True)
class LogFilter:
    from_block: params.BlockRef
    to_block: params.BlockRef
    block_hash: bytes | None
    addresses: tuple[bytes, ...]
    topics: TopicSpec

    def could_match(self, bloom: int) -> bool:
        """False when the block's bloom proves no log can match."""
        if self.addresses and not any(_in_bloom(bloom, a) for a in self.addresses):
            return False
        for alternatives in self.topics:
            if alternatives is not None and not any(_in_bloom(bloom, t) for t in alternatives):
                return False
        return True

    def matches(self, address: bytes, topics: tuple[bytes, ...]) -> bool:
        if self.addresses and address not in self.addresses:
            return False
        if len(self.topics) > len(topics):
            return False
        for alternatives, topic in zip(self.topics, topics, strict=False):
            if alternatives is not None and topic not in alternatives:
                return False
        return True

    def logs_in(self, stored: StoredBlock, logs: LogIndex) -> Iterator[dict[str, Any]]:
        if not self.could_match(stored.header.bloom):
            return
        index = logs.of(stored)
        for i in index.candidates(self):
            entry = index.entries[i]
            if self.matches(entry.address, entry.topics):
                yield entry.json


@dataclass(frozen=True)
class IndexedLog:
    """One log of a committed block: what filters match on, and its JSON."""

    address: bytes
    topics: tuple[bytes, ...]
    json: dict[str, Any]


@dataclass(frozen=True)
class BlockLogs:
    """A block's logs with an index by address and by topic at each position."""

    entries: tuple[IndexedLog, ...]
    by_address: dict[bytes, list[int]]
    by_topic: tuple[dict[bytes, list[int]], ...]
    size_estimate: int = 0  # bytes held, as LogIndex counts them

    @classmethod
    def of(cls, entries: tuple[IndexedLog, ...], data_bytes: int = 0) -> BlockLogs:
        """`data_bytes`: the total length of the logs' data, for the size estimate."""
        by_address: dict[bytes, list[int]] = {}
        by_topic: tuple[dict[bytes, list[int]], ...] = ({}, {}, {}, {})
        topics = 0
        for i, entry in enumerate(entries):
            by_address.setdefault(entry.address, []).append(i)
            topics += len(entry.topics)
            for position, topic in enumerate(entry.topics[:4]):
                by_topic[position].setdefault(topic, []).append(i)
        size = (
            BLOCK_LOGS_BYTES
            + LOG_BYTES * len(entries)
            + TOPIC_BYTES * topics
            + (5 * data_bytes) // 2
        )
        return cls(entries, by_address, by_topic, size)

    def candidates(self, flt: LogFilter) -> list[int] | range:
        """Positions that may match, from the filter's most selective field, in log order."""
        best: list[int] | None = None
        fields: list[tuple[dict[bytes, list[int]], tuple[bytes, ...]]] = []
        if flt.addresses:
            fields.append((self.by_address, flt.addresses))
        for position, alternatives in enumerate(flt.topics[:4]):
            if alternatives is not None:
                fields.append((self.by_topic[position], alternatives))
        for index, wanted in fields:
            found = sorted({i for key in wanted for i in index.get(key, ())})
            if best is None or len(found) < len(best):
                best = found
        return range(len(self.entries)) if best is None else best


# Bytes an indexed block holds, measured with tracemalloc (tests/unit/test_memory.py): ~1 KB
# per log (its JSON and index entries), ~250 per topic, 2.5 per byte of data (bytes and hex).
BLOCK_LOGS_BYTES = 512
LOG_BYTES = 1_000
TOPIC_BYTES = 250
DEFAULT_LOG_INDEX_BYTES = 32 * 1024 * 1024


class LogIndex:
    """Every log of a block, formatted and indexed once per block (blocks never change), for
    the blocks read most recently, within `limit_bytes`. One per node."""

    def __init__(self, limit_bytes: int = DEFAULT_LOG_INDEX_BYTES) -> None:
        self._cache: SizedLru[bytes, BlockLogs] = SizedLru(
            "log_index", limit_bytes, lambda logs: logs.size_estimate
        )

    def of(self, stored: StoredBlock) -> BlockLogs:
        return self._cache.get_or_build(stored.header.hash, lambda: _index(stored))

    def footprint(self) -> Footprint:
        return self._cache.footprint()


def _index(stored: StoredBlock) -> BlockLogs:
    entries: list[IndexedLog] = []
    log_index = 0
    data_bytes = 0
    for tx_index, receipt in enumerate(stored.receipts):
        if receipt.logs:
            formatted = format_logs(stored, tx_index, log_index)
            for log, json in zip(receipt.logs, formatted, strict=True):
                topics = tuple(_topic_bytes(t) for t in log.topics)
                entries.append(IndexedLog(bytes(log.address), topics, json))
                data_bytes += len(log.data)
        log_index += len(receipt.logs)
    return BlockLogs.of(tuple(entries), data_bytes)


# A pure function of its argument, so one cache for the process is right.
@functools.lru_cache(maxsize=4096)
def _bloom_bits(item: bytes) -> int:
    """The three bits `item` sets in a 2048-bit bloom (eth_bloom's rule), as one mask."""
    return int(BloomFilter.from_iterable([item]))


def _in_bloom(bloom: int, item: bytes) -> bool:
    mask = _bloom_bits(item)
    return bloom & mask == mask


def _topic_bytes(topic: int | bytes) -> bytes:
    if isinstance(topic, int):
        return topic.to_bytes(32, "big")
    return bytes(topic).rjust(32, b"\x00")


def parse_filter(value: Any, index: int = 0) -> LogFilter:
    if not isinstance(value, dict):
        raise invalid_params(f"invalid argument {index}: expected a filter object")
    block_hash = value.get("blockHash")
    if block_hash is not None and (
        value.get("fromBlock") is not None or value.get("toBlock") is not None
    ):
        raise invalid_params(
            f"invalid argument {index}: cannot specify both BlockHash and FromBlock/ToBlock, "
            "choose one or the other"
        )
    raw_addresses = value.get("address")
    if raw_addresses is None:
        addresses: tuple[bytes, ...] = ()
    elif isinstance(raw_addresses, list):
        addresses = tuple(params.address(a, index) for a in raw_addresses)
    else:
        addresses = (params.address(raw_addresses, index),)
    raw_topics = value.get("topics") or []
    if not isinstance(raw_topics, list):
        raise invalid_params(f"invalid argument {index}: topics must be an array")
    if len(raw_topics) > 4:
        raise invalid_params(f"invalid argument {index}: too many topics (max 4)")
    topics: list[tuple[bytes, ...] | None] = []
    for entry in raw_topics:
        if entry is None:
            topics.append(None)
        elif isinstance(entry, list):
            options = tuple(params.hash32(t, index) for t in entry if t is not None)
            topics.append(options if options and None not in entry else None)
        else:
            topics.append((params.hash32(entry, index),))
    return LogFilter(
        from_block=params.block_ref(value.get("fromBlock"), index, default="latest"),
        to_block=params.block_ref(value.get("toBlock"), index, default="latest"),
        block_hash=params.hash32(block_hash, index) if block_hash is not None else None,
        addresses=addresses,
        topics=tuple(topics),
    )
